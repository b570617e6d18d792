"""Fencing with real blob leases (Azurite) and the real vault: a rotator frozen past its lease
never stays Key Vault's current version over a consent stored meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from broker.credentials import Source
from broker.locks import CONTAINER
from tests.support.broker import consented_credential, make_broker, sign_in_and_finish


@pytest.fixture
def brokers(devstack, azurite, tmp_path):
    """Two brokers on one vault and one storage account: two Function instances."""
    first = make_broker(devstack, tmp_path / "a", storage=azurite, lease_seconds=15)
    second = make_broker(devstack, tmp_path / "b", storage=azurite, lease_seconds=15)
    return first, second


def lose_lease(azurite: str, credential_id: str) -> None:
    """What the lease running out while its holder is frozen looks like to everyone else."""
    blob = BlobServiceClient.from_connection_string(azurite).get_blob_client(
        CONTAINER, credential_id)
    BlobLeaseClient(blob).break_lease(lease_break_period=0)


def current_token(broker, credential_id):
    """What a consumer resolving the unversioned URL gets."""
    secret = broker.vault.client.get_secret(f"rt-{credential_id}")
    return secret.value, secret.properties


def test_a_rotator_frozen_past_its_lease_does_not_stay_current_over_a_newer_consent(
        brokers, azurite):
    rotating, consenting = brokers
    credential = consented_credential(rotating)
    consent = {}

    def frozen(credential_id):
        # frozen between its checks and its PUT: its lease runs out, a consent is stored
        lose_lease(azurite, credential_id)
        consent["result"] = sign_in_and_finish(consenting, credential_id)
        consent["token"], _ = consenting.vault.read_token(credential_id,
                                                          consent["result"].version)

    rotating.rotator.before_write = frozen
    result = rotating.rotate(credential.id)

    assert result.outcome == "rotated"  # its write did land, after the consent
    value, props = current_token(rotating, credential.id)
    assert value == consent["token"]
    assert props.tags["source"] == Source.CONSENT
    assert props.version != consent["result"].version  # a republished copy of the consent
    assert props.tags["obtained_at"] == consenting.vault.latest_version(
        credential.id).tags["obtained_at"]
    # and the broker's own view agrees with what consumers get
    assert rotating.get_credential(credential.id).latest.source is Source.CONSENT


def test_a_rotator_that_learns_its_lease_is_lost_before_writing_drops_its_token(brokers,
                                                                                 azurite):
    rotating, consenting = brokers
    credential = consented_credential(rotating)
    consent = {}

    def stalled(credential_id):
        lose_lease(azurite, credential_id)
        consent["result"] = sign_in_and_finish(consenting, credential_id)
        # the renewer's next renewal (every lease/3 = 5 s) finds the lease taken
        import time

        time.sleep(6)

    rotating.rotator.after_redeem = stalled
    result = rotating.rotate(credential.id)

    assert result.outcome == "skipped" and "lease" in result.message
    latest = rotating.vault.latest_version(credential.id)
    assert latest.version == consent["result"].version  # no write at all, no repair needed


def test_a_rotation_that_kept_its_lease_needs_no_repair(brokers):
    rotating, _ = brokers
    credential = consented_credential(rotating)
    before = datetime.now(UTC)

    result = rotating.rotate(credential.id)

    assert result.outcome == "rotated"
    _, props = current_token(rotating, credential.id)
    assert props.version == result.version and props.tags["source"] == Source.ROTATION
    assert datetime.fromisoformat(props.tags["obtained_at"]) >= before
