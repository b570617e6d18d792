"""Consent through MSAL's auth-code flow and the emulator's pages: what is checked before a token
is stored, and that nothing is stored when a check fails."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.credentials import Source, Status
from broker.errors import ConsentFailed, InvalidInput
from broker.identity import ARM_SCOPE, GRAPH_SCOPE, PARTNER_CENTER_SCOPE, Identity
from devstack import seed
from tests.support.broker import (
    REDIRECT_URI,
    consented_credential,
    make_broker,
    private_devstack,
    sign_in_and_finish,
    spec,
)
from tests.support.browserless import SignInError, auth_response, complete_sign_in


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def only_placeholder(broker, credential_id):
    [version] = broker.versions(credential_id)
    return version.is_placeholder and not version.enabled


def test_consent_stores_the_token_as_a_new_version_read_back(broker):
    added = broker.add_credential(spec())
    assert added.stored_status is Status.PENDING_CONSENT

    result = sign_in_and_finish(broker, added.id)

    assert result.consented_by == seed.PARTNER_ADMIN_UPN and result.mfa
    assert result.roles == ("Global Administrator", "Admin Agent")
    assert result.secret_id == broker.vault.secret_id(added.id, result.version)
    latest = broker.vault.latest_version(added.id)
    assert latest.version == result.version and latest.enabled
    assert latest.source is Source.CONSENT and latest.status is Status.ACTIVE
    assert latest.consented_by == seed.PARTNER_ADMIN_UPN and latest.mfa
    assert latest.roles == ("Global Administrator", "Admin Agent")
    # what was stored is a live refresh token
    credential = broker.get_credential(added.id)
    token, _ = broker.vault.read_token(added.id)
    assert broker.identity.redeem(credential, token).claims["tid"] == seed.PARTNER_TENANT_ID


def test_the_sign_in_url_carries_pkce_state_nonce_and_the_scopes(broker):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI, prompt_consent=True,
                                 scopes=[GRAPH_SCOPE, ARM_SCOPE])
    query = parse_qs(urlsplit(start.auth_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["state"] == [start.flow["state"]] and query["nonce"]
    assert query["prompt"] == ["consent"]
    scopes = query["scope"][0].split()
    assert scopes[0] == PARTNER_CENTER_SCOPE and {GRAPH_SCOPE, ARM_SCOPE} <= set(scopes)
    assert "offline_access" in scopes


def test_a_sign_in_always_asks_which_account_consents(broker):
    """A session left in the browser must not consent silently as whoever it belongs to."""
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI)
    assert parse_qs(urlsplit(start.auth_url).query)["prompt"] == ["select_account"]
    assert urlsplit(start.auth_url).path == f"/{seed.PARTNER_TENANT_ID}/oauth2/v2.0/authorize"


def test_extra_scopes_are_consented_and_the_token_serves_them(devstack, tmp_path):
    # a devstack of its own: consenting to ARM tenant-wide would change the shared one
    with private_devstack(tmp_path / "devstack") as stack:
        broker = make_broker(stack, tmp_path)
        added = broker.add_credential(spec())
        sign_in_and_finish(broker, added.id, prompt_consent=True, scopes=[ARM_SCOPE])
        credential = broker.get_credential(added.id)
        token, _ = broker.vault.read_token(added.id)
        arm = broker.identity.redeem(credential, token, scopes=[ARM_SCOPE])
        assert arm.claims["aud"] == seed.ARM_RESOURCE


def test_bad_scopes_are_refused_before_any_sign_in(broker):
    added = broker.add_credential(spec())
    with pytest.raises(InvalidInput):
        broker.begin_consent(added.id, REDIRECT_URI, scopes=["not a scope"])


def test_own_app_credentials_consent_with_the_partners_app(broker):
    credential = consented_credential(broker, own_app=True)
    assert credential.client_id == seed.PARTNER_APP_ID
    assert credential.stored_status is Status.ACTIVE


def test_a_tenant_given_by_domain_is_matched_by_its_guid(broker):
    credential = consented_credential(broker, tenant_id=seed.PARTNER_TENANT_DOMAIN)
    assert credential.tenant_id == seed.PARTNER_TENANT_DOMAIN
    assert credential.stored_status is Status.ACTIVE


def test_an_admin_agent_without_a_directory_role_may_renew_consent(broker):
    consented_credential(broker)  # an admin granted the CPV app tenant-wide
    credential = consented_credential(broker, seed.PARTNER_AGENT_UPN)
    assert credential.latest.consented_by == seed.PARTNER_AGENT_UPN
    assert credential.latest.roles == ("Admin Agent",)


def test_a_sign_in_without_mfa_stores_nothing(broker, devstack):
    # the tenant requires no MFA (Conditional Access off), so Entra hands out a Partner Center
    # token with amr ["pwd"]: the broker's own MFA check is what refuses it (remove the check
    # in broker/consent.py and this test fails: the token would be stored)
    added = broker.add_credential(spec())
    with devstack.mfa_not_required(), pytest.raises(ConsentFailed) as caught:
        sign_in_and_finish(broker, added.id, seed.PARTNER_NOMFA_UPN)
    assert caught.value.reason == "no-mfa"
    assert only_placeholder(broker, added.id)


def test_a_user_who_is_not_an_admin_agent_stores_nothing(broker):
    added = broker.add_credential(spec())
    with pytest.raises(ConsentFailed) as caught:
        sign_in_and_finish(broker, added.id, seed.PARTNER_USER_UPN)
    assert caught.value.reason == "not-admin-agent"
    assert only_placeholder(broker, added.id)


def test_an_account_of_another_tenant_cannot_sign_in_for_the_credential(broker):
    # the credential is the vendor's own tenant; a contoso admin is not in that directory, and
    # the authority (tenant-specific, as the broker always asks) stops at its sign-in page
    added = broker.add_credential(spec(tenant_id=seed.CPV_TENANT_ID))
    start = broker.begin_consent(added.id, REDIRECT_URI)
    with pytest.raises(SignInError, match="doesn't exist"):
        complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN)
    assert only_placeholder(broker, added.id)


class TenantConfusedIdentity(Identity):
    """An authority that issues a token for another tenant than the one asked for: devstack,
    like Entra, never does, so this is the one answer faked, to prove the check behind it."""

    def finish(self, credential, flow, params):
        redemption = super().finish(credential, flow, params)
        claims = {**redemption.claims, "tid": seed.CPV_TENANT_ID}
        return dataclasses.replace(redemption, claims=claims)


def test_a_token_for_the_wrong_tenant_stores_nothing(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path)
    broker.consent.identity = TenantConfusedIdentity(broker.settings, broker.vault)
    added = broker.add_credential(spec())
    with pytest.raises(ConsentFailed) as caught:
        sign_in_and_finish(broker, added.id)
    assert caught.value.reason == "wrong-tenant"
    assert seed.CPV_TENANT_ID in str(caught.value)
    assert only_placeholder(broker, added.id)


def test_a_cancelled_consent_stores_nothing(broker):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI, prompt_consent=True)
    redirect = complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN, consent=False)
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent(start.flow, auth_response(redirect))
    assert caught.value.reason == "cancelled"
    assert only_placeholder(broker, added.id)


def test_a_callback_for_another_sign_in_is_refused(broker):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI)
    params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN))
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent(start.flow, {**params, "state": "forged"})
    assert caught.value.reason == "state-mismatch"
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent({}, params)
    assert caught.value.reason == "state-mismatch"
    assert only_placeholder(broker, added.id)


def test_a_replayed_code_is_rejected_and_stores_nothing_more(broker):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI)
    params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN))
    broker.finish_consent(start.flow, params)
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent(start.flow, params)
    assert caught.value.reason == "code-rejected"
    assert "AADSTS54005" in str(caught.value)
    assert len(broker.versions(added.id)) == 2


def test_an_edit_of_the_tenant_during_sign_in_voids_the_sign_in(broker):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI)
    params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN))
    broker.edit_credential(added.id, spec(added.id, tenant_id=seed.PARTNER_TENANT_DOMAIN))
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent(start.flow, params)
    assert caught.value.reason == "state-mismatch"
    assert all(v.is_placeholder for v in broker.versions(added.id))


def test_consent_failures_never_carry_tokens_or_codes(broker, devstack):
    added = broker.add_credential(spec())
    start = broker.begin_consent(added.id, REDIRECT_URI)
    with devstack.mfa_not_required():
        params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_NOMFA_UPN))
    with pytest.raises(ConsentFailed) as caught:
        broker.finish_consent(start.flow, params)
    text = f"{caught.value} {caught.value.hint}"
    assert params["code"] not in text
    assert start.flow["code_verifier"] not in text
