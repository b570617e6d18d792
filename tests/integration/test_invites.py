"""Invite links against the vault: single use, bound to one credential, expiring, replaced by a
newer link, and surviving the nightly rotation."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeSerializer

from broker.credentials import Status
from broker.errors import ConsentFailed, CredentialNotFound, InvalidInput
from broker.invites import SALT
from devstack import seed
from tests.support.broker import (
    PUBLIC_URL,
    REDIRECT_URI,
    consented_credential,
    make_broker,
    sign_in_and_finish,
    spec,
)
from tests.support.browserless import auth_response, complete_sign_in


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def token_of(invite) -> str:
    return invite.url.rsplit("/", 1)[1]


def refused(call, *args, **kwargs) -> ConsentFailed:
    with pytest.raises(ConsentFailed) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == "invite-invalid"
    return caught.value


def test_an_invite_lets_an_admin_consent_exactly_once(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    assert invite.url.startswith(f"{PUBLIC_URL}/invite/")
    assert invite.credential_id == added.id
    assert broker.open_invite(token_of(invite)).id == added.id

    result = sign_in_and_finish(broker, added.id, invite_token=token_of(invite))

    assert result.consented_by == seed.PARTNER_ADMIN_UPN
    assert "invite" not in broker.vault.latest_version(added.id).tags
    assert "used" in str(refused(broker.open_invite, token_of(invite)))
    refused(broker.begin_consent, added.id, REDIRECT_URI, invite_token=token_of(invite))


def test_a_link_signed_with_another_key_is_refused(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    claim = broker.invites.verify(token_of(invite))
    forged = URLSafeSerializer("x" * 48, salt=SALT).dumps(
        {"c": added.id, "i": claim.invite_id, "e": int(claim.expires_at.timestamp())})
    refused(broker.open_invite, forged)
    refused(broker.begin_consent, added.id, REDIRECT_URI, invite_token=forged)


def test_an_expired_link_is_refused(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id, ttl_hours=0.5 / 3600)
    time.sleep(0.6)
    assert "expired" in str(refused(broker.open_invite, token_of(invite)))


def test_a_link_opens_only_its_own_credential(broker):
    first, second = broker.add_credential(spec()), broker.add_credential(spec())
    invite = broker.create_invite(first.id)
    broker.create_invite(second.id)
    refused(broker.begin_consent, second.id, REDIRECT_URI, invite_token=token_of(invite))
    assert only_placeholder(broker, second.id)


def only_placeholder(broker, credential_id):
    return all(v.is_placeholder for v in broker.versions(credential_id))


def test_a_newer_link_replaces_the_older_one(broker):
    added = broker.add_credential(spec())
    older = broker.create_invite(added.id)
    newer = broker.create_invite(added.id)
    refused(broker.open_invite, token_of(older))
    assert broker.open_invite(token_of(newer)).id == added.id


def test_a_failed_consent_leaves_the_link_open(broker, devstack):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    with devstack.mfa_not_required(), pytest.raises(ConsentFailed) as caught:
        sign_in_and_finish(broker, added.id, seed.PARTNER_NOMFA_UPN,
                           invite_token=token_of(invite))
    assert caught.value.reason == "no-mfa"
    sign_in_and_finish(broker, added.id, invite_token=token_of(invite))
    assert broker.get_credential(added.id).stored_status is Status.ACTIVE


def test_a_link_used_twice_in_parallel_stores_one_consent(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    starts = [broker.begin_consent(added.id, REDIRECT_URI, invite_token=token_of(invite))
              for _ in range(2)]
    params = [auth_response(complete_sign_in(s.auth_url, seed.PARTNER_ADMIN_UPN))
              for s in starts]
    broker.finish_consent(starts[0].flow, params[0])
    refused(broker.finish_consent, starts[1].flow, params[1])
    assert len(broker.versions(added.id)) == 2


def test_an_invite_survives_the_nightly_rotation(broker):
    credential = consented_credential(broker)
    invite = broker.create_invite(credential.id)
    assert broker.rotate(credential.id).outcome == "rotated"
    assert broker.open_invite(token_of(invite)).id == credential.id


def test_a_consent_without_the_link_closes_it_too(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    sign_in_and_finish(broker, added.id)  # the operator consented themselves meanwhile
    refused(broker.open_invite, token_of(invite))


def test_invites_for_unknown_credentials_or_bad_lifetimes_are_refused(broker):
    with pytest.raises(CredentialNotFound):
        broker.create_invite("no-such-credential-here")
    added = broker.add_credential(spec())
    with pytest.raises(InvalidInput):
        broker.create_invite(added.id, ttl_hours=0)


def test_a_removed_credentials_link_is_refused(broker):
    added = broker.add_credential(spec())
    invite = broker.create_invite(added.id)
    broker.remove_credential(added.id)
    refused(broker.open_invite, token_of(invite))
