"""Validation end to end: redeem (storing no version), MFA in the access token, Partner Center
answering; every expected failure is a report, never an exception."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from broker import jobs
from broker.credentials import Source, Status
from broker.errors import CredentialNotFound
from devstack import seed
from tests.support.broker import (
    REDIRECT_URI,
    consented_credential,
    make_broker,
    private_devstack,
    spec,
)
from tests.support.browserless import auth_response, complete_sign_in, consent_with_msal


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def test_a_working_credential_validates_and_writes_no_version(broker):
    credential = consented_credential(broker)
    before = datetime.now(UTC)

    report = broker.validate(credential.id)

    assert report.ok and report.mfa
    assert report.organization == seed.PARTNER_TENANT_NAME
    # the result is on the current version's tags; the token Entra returned was not stored
    assert report.version == credential.latest.version
    assert [v.version for v in broker.versions(credential.id) if not v.is_placeholder] == \
        [credential.latest.version]
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == report.version and latest.source is Source.CONSENT
    assert latest.check.result == "ok"
    validated = broker.get_credential(credential.id)
    assert validated.last_validation == "ok"
    assert before - timedelta(seconds=1) <= validated.last_validated_at <= datetime.now(UTC)
    # the result carries over to the next rotation's version
    broker.rotate(credential.id)
    assert broker.get_credential(credential.id).last_validation == "ok"


def test_a_credential_not_consented_yet_fails_validation_plainly(broker):
    added = broker.add_credential(spec())
    report = broker.validate(added.id)
    assert not report.ok and "consent" in report.message
    assert len(broker.versions(added.id)) == 1


def test_an_unknown_credential_is_bad_input(broker):
    with pytest.raises(CredentialNotFound):
        broker.validate("no-such-credential-here")


def test_a_token_obtained_without_mfa_fails_and_asks_for_consent(devstack, tmp_path):
    # a devstack of its own: the Graph sign-in below consents to Graph tenant-wide
    with private_devstack(tmp_path / "devstack") as stack:
        check_a_token_without_mfa(make_broker(stack, tmp_path))


def check_a_token_without_mfa(broker):
    credential = consented_credential(broker)
    # an old token from before MFA: signed in for Microsoft Graph only, which needs no MFA
    graph = f"{seed.GRAPH_RESOURCE}/User.Read"
    flow = broker.identity.begin(credential, REDIRECT_URI, scopes=[graph])
    flow["broker_scopes"] = [graph]
    params = auth_response(complete_sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN))
    weak = broker.identity.finish(credential, flow, params)
    assert "mfa" not in weak.claims["amr"]
    broker.vault.write_token(credential, weak.refresh_token, source=Source.IMPORT,
                             obtained_at=datetime.now(UTC), consented_by=seed.PARTNER_ADMIN_UPN,
                             mfa=False)

    report = broker.validate(credential.id)

    assert not report.ok and not report.mfa
    assert "AADSTS50076" in report.message
    assert broker.get_credential(credential.id).stored_status is Status.NEEDS_CONSENT
    assert broker.get_credential(credential.id).last_validation == "needs-consent"
    assert broker.notifier.kinds(credential.id) == ["needs-consent"]


def test_partner_center_out_of_reach_fails_and_changes_only_the_tags(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path, partner_center_url="https://127.0.0.1:9")
    credential = consented_credential(broker)
    report = broker.validate(credential.id)
    assert not report.ok and "could not be reached" in report.message
    assert report.mfa
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == report.version == credential.latest.version
    assert latest.check.result == "partner-center"
    assert broker.get_credential(credential.id).stored_status is Status.ACTIVE


def test_a_busy_credential_is_reported_not_waited_on_forever(broker):
    credential = consented_credential(broker)
    broker.validator.lease_wait = 0.2
    with broker.leases.hold(credential.id):
        report = broker.validate(credential.id)
    assert not report.ok and "Another operation" in report.message
    assert broker.vault.latest_version(credential.id).version == credential.latest.version


def test_a_revoked_grant_fails_validation_and_needs_consent(devstack, tmp_path):
    with private_devstack(tmp_path / "devstack") as stack:
        broker = make_broker(stack, tmp_path)
        credential = consented_credential(broker)
        stack.revoke(seed.PARTNER_ADMIN_UPN)
        report = broker.validate(credential.id)
        assert not report.ok and "AADSTS50173" in report.message
        assert broker.get_credential(credential.id).stored_status is Status.NEEDS_CONSENT
        [event] = broker.notifier.for_credential(credential.id)
        assert event.kind == "needs-consent" and event.invite_url
        assert broker.vault.latest_version(credential.id).enabled  # the token is kept


def test_a_token_without_mfa_is_refused_by_the_brokers_check_and_a_human_is_told(devstack,
                                                                                 tmp_path):
    """Conditional Access off: Entra hands a password-only token to a user without MFA; the
    broker's own MFA check fails the validation and the validation job notifies it."""
    broker = make_broker(devstack, tmp_path)
    with devstack.mfa_not_required():
        token = consent_with_msal(
            devstack.env["BROKER_AUTHORITY_HOST"], devstack.env["BROKER_CPV_CLIENT_ID"],
            devstack.env["BROKER_CPV_CLIENT_SECRET"], seed.PARTNER_NOMFA_UPN,
            verify=devstack.ca_bundle)["refresh_token"]
        credential_id = f"nomfa-{uuid.uuid4().hex[:8]}"
        path = tmp_path / "tokens.csv"
        path.write_text("id,environment,product,marketplace,tenant_id,refresh_token\n"
                        f"{credential_id},test,Microsoft CSP,US,{seed.PARTNER_TENANT_ID},"
                        f"{token}\n")
        assert broker.import_file(path).imported == [credential_id]
        reports = [r for r in jobs.validate_all(broker) if r.credential_id == credential_id]
    assert [(r.ok, r.mfa, r.result) for r in reports] == [(False, False, "no-mfa")]
    assert broker.notifier.kinds(credential_id) == ["needs-consent"]
