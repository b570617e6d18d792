"""The vault's SQLite store and backup blobs, without HTTP."""

from __future__ import annotations

import base64

import pytest

from devstack.keyvault import backup
from devstack.keyvault.errors import VaultError
from devstack.keyvault.store import (
    RECOVERABLE_DAYS,
    DeletedMissing,
    NameDeleted,
    NameTaken,
    SecretMissing,
    Store,
)

DAY = 86400


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    store = Store(tmp_path, clock)
    yield store
    store.close()


def test_versions_and_latest(store, clock):
    first = store.set("Rt-Contoso", "one", tags={"a": "b"})
    clock.now += 5
    second = store.set("rt-contoso", "two")
    assert second.name == "Rt-Contoso"  # the case it was created with
    assert store.get("RT-CONTOSO").version == second.version
    assert store.get("rt-contoso", first.version.upper()).tags == {"a": "b"}
    assert {v.version for v in store.versions("rt-contoso")} == {first.version, second.version}
    with pytest.raises(SecretMissing):
        store.get("rt-contoso", "0" * 32)


def test_update_touches_only_what_is_given(store, clock):
    made = store.set("s", "v", content_type="text/plain", tags={"a": "b"})
    clock.now += 60
    updated = store.update("s", None, {"enabled": False})
    assert not updated.enabled
    assert (updated.tags, updated.content_type) == ({"a": "b"}, "text/plain")
    assert updated.updated == made.updated + 60 and updated.created == made.created
    assert store.get("s") == updated


def test_soft_delete_recover_purge_and_retention(store, clock):
    store.set("s", "v")
    latest, deletion = store.delete("s")
    assert deletion.scheduled_purge_date - deletion.deleted_date == RECOVERABLE_DAYS * DAY
    with pytest.raises(SecretMissing):
        store.get("s")
    with pytest.raises(NameDeleted):
        store.set("s", "again")
    assert store.recover("s") == latest
    store.delete("s")
    store.purge("s")
    with pytest.raises(DeletedMissing):
        store.purge("s")
    store.set("gone-by-itself", "v")
    store.delete("gone-by-itself")
    clock.now += RECOVERABLE_DAYS * DAY
    assert store.list_deleted(None, 25) == []
    assert store.set("gone-by-itself", "new").value == "new"


def test_a_failed_transaction_leaves_nothing_behind(store):
    store.set("s", "v")
    with pytest.raises(RuntimeError), store._transaction() as db:
        db.execute("DELETE FROM versions")
        raise RuntimeError("crash mid-write")
    assert store.get("s").value == "v"


def test_state_is_on_disk(tmp_path, clock):
    first = Store(tmp_path, clock)
    made = first.set("s", "v", tags={"k": "v"})
    first.close()
    again = Store(tmp_path, clock)
    assert again.get("s") == made
    again.close()


def test_paging_order(store):
    for name in ("b", "A", "c"):
        store.set(name, "v")
    assert [v.name for v in store.list_latest(None, 2)] == ["A", "b"]
    assert [v.name for v in store.list_latest("b", 2)] == ["c"]


def test_backup_round_trip_and_conflicts(store):
    store.set("s", "one")
    store.set("s", "two")
    blob = backup.seal(store.versions("s"))
    assert "one" not in base64.urlsafe_b64decode(blob + "==").decode("latin-1")
    with pytest.raises(NameTaken):
        store.restore(backup.unseal(blob))
    store.delete("s")
    with pytest.raises(NameDeleted):
        store.restore(backup.unseal(blob))
    store.purge("s")
    assert store.restore(backup.unseal(blob)).value == "two"


@pytest.mark.parametrize("blob", ["", "AAAA", backup.seal([])[:-2] + "xx"],
                         ids=["empty", "not-a-blob", "tampered"])
def test_broken_blobs_are_malformed_backup_blobs(blob):
    # Key Vault's code for a blob it cannot open (issue 14 point 8, compared with the service)
    with pytest.raises(VaultError) as info:
        backup.unseal(blob)
    assert (info.value.status, info.value.code) == (400, "Malformed backup blob")
