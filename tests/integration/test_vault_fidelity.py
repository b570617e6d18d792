"""The broker against the behaviours of the real services that devstack now has (issue 14):
a lost answer to a write (point 11), purge protection (9), a deleted disabled secret (8) and a
refresh token of another client (2). Each would only show in Azure before."""

from __future__ import annotations

import dataclasses

import pytest

from broker.errors import AppMisconfigured, InvalidInput
from tests.support.broker import (
    consented_credential,
    make_broker,
    private_devstack,
    sign_in_and_finish,
    spec,
)


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def test_a_rotation_whose_write_answer_is_lost_keeps_the_new_token_once(broker, devstack):
    credential = consented_credential(broker)
    before = len(broker.versions(credential.id))
    lost_before = devstack.state()["answers_lost"]["vault"]
    devstack.faults("vault", "lost-answer", 1)
    try:
        result = broker.rotate(credential.id)
    finally:
        devstack.faults("vault", "lost-answer", 0)
    assert devstack.state()["answers_lost"]["vault"] > lost_before
    # the write happened, the broker found it and says so; nothing written twice, nothing lost
    assert result.outcome == "rotated", result.message
    assert len(broker.versions(credential.id)) == before + 1
    current = broker.get_credential(credential.id).latest
    assert current.version == result.version
    # the stored token is the live one: the next rotation redeems it
    assert broker.rotate(credential.id).outcome == "rotated"


def test_a_consent_whose_write_answer_is_lost_is_reported_done(broker, devstack):
    added = broker.add_credential(spec())
    devstack.faults("vault", "lost-answer", 1)
    try:
        done = sign_in_and_finish(broker, added.id)
    finally:
        devstack.faults("vault", "lost-answer", 0)
    latest = broker.get_credential(added.id).latest
    assert latest.version == done.version and latest.enabled and not latest.is_placeholder


def test_a_credential_removed_before_consent_can_be_recovered(broker):
    # Key Vault answers GET /deletedsecrets/<name> with 403 SecretDisabled when the latest
    # version is disabled, as a pending credential's placeholder is
    added = broker.add_credential(spec())
    broker.remove_credential(added.id)
    removed = broker.removed_credential(added.id)
    assert removed.id == added.id and removed.removed_on is not None
    assert broker.recover_credential(added.id).id == added.id


def test_an_id_held_by_a_removed_credential_never_suggests_a_purge_the_vault_refuses(
        broker, devstack):
    added = broker.add_credential(spec())
    broker.remove_credential(added.id)
    with pytest.raises(InvalidInput) as purgeable:
        broker.add_credential(spec(added.id))
    assert "purge it" in purgeable.value.errors["id"]
    devstack.vault_settings(purge_protection=True)
    try:
        with pytest.raises(InvalidInput) as protected:
            broker.add_credential(spec(added.id))
    finally:
        devstack.vault_settings(purge_protection=False)
    text = protected.value.errors["id"]
    assert "purge protection" in text and "purge it" not in text and "recover it" in text


def test_a_refresh_token_of_another_app_is_app_misconfigured_and_kept(broker):
    # AADSTS700007: the credential names another app than the one the token was issued to
    credential = consented_credential(broker, own_app=True)
    token, _ = broker.vault.read_token(credential.id)
    as_cpv = dataclasses.replace(credential, client_id=None)
    with pytest.raises(AppMisconfigured) as refused:
        broker.identity.redeem(as_cpv, token)
    assert "AADSTS700007" in str(refused.value)
    assert token not in f"{refused.value} {refused.value.hint}"


def test_versions_pages_are_never_shown_empty_when_key_vault_pages_short(tmp_path):
    # with Key Vault's real paging (`--realistic`), a page may come back empty with a nextLink
    # (https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret-versions): the broker
    # must neither call the credential unknown nor lose versions
    with private_devstack(tmp_path / "stack", "--realistic") as stack:
        broker = make_broker(stack, tmp_path)
        credential = consented_credential(broker)
        for _ in range(4):
            assert broker.rotate(credential.id).outcome == "rotated"
        expected = {v.version for v in broker.versions(credential.id)}
        assert len(expected) == 6  # placeholder, consent, four rotations
        for size in (1, 2, 5):
            seen, continuation = [], None
            while True:
                page, continuation = broker.versions_page(credential.id, page_size=size,
                                                          continuation=continuation)
                assert page or continuation is None
                seen += [v.version for v in page]
                if continuation is None:
                    break
            assert sorted(seen) == sorted(expected)
