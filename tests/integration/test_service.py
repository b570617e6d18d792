"""The Broker facade's credential life cycle against devstack: register, edit, remove, flag,
count, import; bad input changes nothing."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime

import pytest

from broker.credentials import CredentialSpec, Status
from broker.errors import CredentialNotFound, InvalidInput, NeedsConsent
from broker.service import Broker
from devstack import seed
from tests.support.broker import (
    RecordingNotifier,
    consented_credential,
    make_broker,
    private_devstack,
    settings_for,
    sign_in_and_finish,
    spec,
    unique_id,
)


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def test_adding_registers_a_disabled_placeholder_pending_consent(broker):
    added = broker.add_credential(spec(environment_name="production"))
    assert added.stored_status is Status.PENDING_CONSENT
    [placeholder] = broker.versions(added.id)
    assert placeholder.is_placeholder and not placeholder.enabled
    assert added.secret_id == broker.vault.secret_id(added.id)
    assert added.id in {c.id for c in broker.list_credentials("production")}
    assert added.id not in {c.id for c in broker.list_credentials("test")}
    with pytest.raises(NeedsConsent):
        broker.vault.read_token(added.id)


def test_an_own_app_credential_keeps_its_client_secret_in_the_vault(broker):
    added = broker.add_credential(spec(own_app=True))
    assert added.client_id == seed.PARTNER_APP_ID
    assert added.secret_expires_on.date() == date(2099, 12, 31)
    assert broker.vault.read_client_secret(added.id) == seed.PARTNER_APP_SECRET


def test_an_existing_id_is_refused_and_nothing_changes(broker):
    added = broker.add_credential(spec())
    with pytest.raises(InvalidInput) as caught:
        broker.add_credential(spec(added.id))
    assert "id" in caught.value.errors
    assert len(broker.versions(added.id)) == 1


def test_invalid_fields_are_all_named_and_nothing_is_written(broker):
    bad = CredentialSpec(id="Not A Slug!", environment="staging", product="", marketplace="US",
                         tenant_id="not a tenant", client_id="nope")
    with pytest.raises(InvalidInput) as caught:
        broker.add_credential(bad)
    assert {"id", "environment", "product", "tenant_id", "client_id"} <= set(caught.value.errors)
    own = dataclasses.replace(spec(own_app=True), secret_expires_on=date(2000, 1, 1))
    with pytest.raises(InvalidInput) as caught:
        broker.add_credential(own)
    assert "secret_expires_on" in caught.value.errors
    with pytest.raises(CredentialNotFound):
        broker.get_credential(own.id)


def test_editing_descriptive_fields_keeps_the_consent(broker):
    credential = consented_credential(broker)
    changed = dataclasses.replace(spec(credential.id), product="Provisioning",
                                  marketplace="EU")
    edited = broker.edit_credential(credential.id, changed)
    assert (edited.product, edited.marketplace) == ("Provisioning", "EU")
    assert edited.stored_status is Status.ACTIVE
    assert edited.latest.version == credential.latest.version
    assert broker.rotate(credential.id).outcome == "rotated"
    assert broker.get_credential(credential.id).product == "Provisioning"


@pytest.mark.parametrize("change", ["tenant", "app"])
def test_changing_the_tenant_or_app_asks_for_consent_again_and_keeps_old_tokens(broker, change):
    credential = consented_credential(broker)
    broker.rotate(credential.id)
    before = broker.versions(credential.id)
    new = spec(credential.id, tenant_id=seed.PARTNER_TENANT_DOMAIN) if change == "tenant" \
        else spec(credential.id, own_app=True)

    result = broker.edit(credential.id, new)
    edited = result.credential

    assert result.verified == "consent-needed"
    assert edited.stored_status is Status.PENDING_CONSENT
    reason = edited.reason(datetime.now(UTC))
    assert (reason.code, reason.by) == ("app-changed", "edit")
    after = broker.versions(credential.id)
    assert len(after) == len(before) + 1  # a new placeholder; nothing deleted
    assert after[0].is_placeholder
    assert {v.version for v in before} <= {v.version for v in after}
    assert not any(v.enabled for v in after)  # old tokens are disabled, not deleted
    assert broker.rotate(credential.id).outcome == "needs-consent"
    # consent again with the new tenant or app: active, the old versions still on record
    sign_in_and_finish(broker, credential.id)
    assert broker.get_credential(credential.id).stored_status is Status.ACTIVE
    assert len(broker.versions(credential.id)) == len(after) + 1


def test_a_credential_moved_to_the_cpv_model_no_longer_shows_the_old_secret_expiry(broker):
    own = broker.add_credential(spec(own_app=True))
    assert own.secret_expires_on is not None
    moved = broker.edit_credential(own.id, spec(own.id))
    assert moved.client_id is None and moved.secret_expires_on is None
    listed = {c.id: c for c in broker.list_credentials()}[own.id]
    assert listed.secret_expires_on is None


def test_editing_an_unknown_credential_or_with_bad_fields_changes_nothing(broker):
    with pytest.raises(CredentialNotFound):
        broker.edit_credential("no-such-credential-here", spec("no-such-credential-here"))
    added = broker.add_credential(spec())
    with pytest.raises(InvalidInput):
        broker.edit_credential(added.id, dataclasses.replace(spec(added.id), environment="x"))
    assert broker.get_credential(added.id).environment == "test"


def test_removing_a_credential_soft_deletes_it(broker):
    added = broker.add_credential(spec(own_app=True))
    broker.remove_credential(added.id)
    with pytest.raises(CredentialNotFound):
        broker.get_credential(added.id)
    assert added.id not in {c.id for c in broker.list_credentials()}
    with pytest.raises(CredentialNotFound):
        broker.remove_credential(added.id)
    # soft-deleted, so the id cannot be reused until it is purged or recovered
    with pytest.raises(InvalidInput):
        broker.add_credential(spec(added.id))


@pytest.mark.parametrize("secret", [seed.PARTNER_APP_EXPIRED_SECRET, "not-the-app-secret"])
def test_a_new_client_secret_entra_refuses_is_invalid_input_and_nothing_is_saved(broker, secret):
    credential = consented_credential(broker, own_app=True)
    before = broker.versions(credential.id)

    with pytest.raises(InvalidInput) as refused:
        broker.edit(credential.id, spec(credential.id, own_app=True, client_secret=secret))

    message = refused.value.errors["client_secret"]
    assert "Entra ID refused this client secret" in message and "Nothing was saved" in message
    assert ("AADSTS7000222" if secret == seed.PARTNER_APP_EXPIRED_SECRET
            else "AADSTS7000215") in message
    assert secret not in message
    assert broker.vault.read_client_secret(credential.id) == seed.PARTNER_APP_SECRET
    assert broker.versions(credential.id) == before
    assert broker.get_credential(credential.id).stored_status is Status.ACTIVE


def test_a_new_client_secret_is_proven_with_the_stored_token_before_it_says_active(broker):
    credential = consented_credential(broker, own_app=True)
    result = broker.edit(credential.id, spec(credential.id, own_app=True))
    assert result.verified == "verified"
    assert result.credential.latest.version != credential.latest.version  # redeemed: renewed
    assert result.credential.stored_status is Status.ACTIVE


def test_a_removed_credential_is_recovered_with_its_versions_or_purged_to_free_its_id(broker):
    credential = consented_credential(broker, own_app=True)
    versions = broker.versions(credential.id)
    broker.remove_credential(credential.id)
    [removed] = [r for r in broker.removed_credentials() if r.id == credential.id]
    assert removed.purgeable and removed.removed_on is not None and removed.purge_on
    assert (removed.environment, removed.tenant_id) == ("test", credential.tenant_id)

    recovered = broker.recover_credential(credential.id)
    assert recovered.stored_status is Status.ACTIVE
    assert broker.versions(credential.id) == versions
    assert broker.vault.read_client_secret(credential.id) == seed.PARTNER_APP_SECRET
    assert credential.id not in {r.id for r in broker.removed_credentials()}

    broker.remove_credential(credential.id)
    broker.purge_credential(credential.id)
    with pytest.raises(CredentialNotFound):
        broker.removed_credential(credential.id)
    assert broker.add_credential(spec(credential.id)).stored_status is Status.PENDING_CONSENT


def test_purge_under_purge_protection_is_refused_and_says_when_key_vault_will(broker):
    from broker.vault import RemovedCredential, purge_refusal

    protected = RemovedCredential("contoso-us", "production", "P", "M", "t", None,
                                  datetime(2027, 3, 6, tzinfo=UTC), "Recoverable")
    refusal = purge_refusal(protected)
    assert not protected.purgeable
    assert "purge protection" in str(refusal) and "2027-03-06" in str(refusal)
    assert "Recover it" in refusal.hint


def test_mark_error_flags_the_credential_and_tells_someone(broker):
    credential = consented_credential(broker)
    broker.mark_error(credential.id, "Rotation message failed five times.")
    assert broker.get_credential(credential.id).stored_status is Status.ERROR
    reason = broker.get_credential(credential.id).reason(datetime.now(UTC))
    assert (reason.code, reason.by) == ("rotation-failed", "worker")
    [event] = broker.notifier.for_credential(credential.id)
    assert event.kind == "error" and "five times" in event.message
    assert credential.id in event.action


def test_a_failing_notifier_never_fails_the_operation(devstack, tmp_path):
    class Broken(RecordingNotifier):
        def notify(self, event):
            raise OSError("webhook down")

    broker = make_broker(devstack, tmp_path, notifier=Broken())
    credential = consented_credential(broker)
    broker.mark_error(credential.id, "flagged")
    assert broker.get_credential(credential.id).stored_status is Status.ERROR


def test_status_counts_cover_every_status(devstack, tmp_path):
    with private_devstack(tmp_path / "devstack") as stack:
        broker = make_broker(stack, tmp_path)
        consented_credential(broker)
        broker.add_credential(spec())
        failing = consented_credential(broker)
        broker.mark_error(failing.id, "flagged")
        assert broker.status_counts() == {"pending-consent": 1, "active": 1, "expiring": 0,
                                          "needs-consent": 0, "error": 1}


def test_import_file_brings_in_a_working_token(broker, tmp_path):
    source = consented_credential(broker)
    token, _ = broker.vault.read_token(source.id)
    new_id = unique_id("imported")
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{
        "id": new_id, "environment": "test", "product": "Billing", "marketplace": "US",
        "tenant_id": seed.PARTNER_TENANT_ID, "refresh_token": token,
    }]))
    report = broker.import_file(path)
    assert report.imported == [new_id]
    assert broker.get_credential(new_id).stored_status is Status.ACTIVE


def test_a_broker_built_from_settings_alone_works(devstack, tmp_path):
    broker = Broker(settings_for(devstack, tmp_path))
    added = broker.add_credential(spec())
    assert broker.get_credential(added.id).stored_status is Status.PENDING_CONSENT
    assert broker.due(datetime.now(UTC)) is not None
