"""Leases: file locks on this machine, and Azure Blob leases against Azurite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from broker.errors import Conflict, InvalidInput
from broker.locks import BlobLeases, FileLeases, leases_from_settings
from broker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 15  # Azure's shortest lease: the kill test waits this long


def unique() -> str:
    return f"lock-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def file_leases(tmp_path) -> FileLeases:
    return FileLeases(tmp_path / "locks")


@pytest.fixture(scope="module")
def blob_leases(azurite) -> BlobLeases:
    return BlobLeases.from_settings(Settings(vault_url="https://v", storage=azurite,
                                             lease_seconds=LEASE_SECONDS))


def never_both_hold(leases, credential_id: str, workers: int = 4, rounds: int = 5) -> int:
    """Workers take the lease in turns; fails if two are ever inside at once."""
    inside, entered, overlaps = [0], [0], []
    guard = threading.Lock()

    def work():
        for _ in range(rounds):
            with leases.hold(credential_id, wait=60):
                with guard:
                    inside[0] += 1
                    entered[0] += 1
                    if inside[0] > 1:
                        overlaps.append(inside[0])
                time.sleep(0.01)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    return entered[0]


def test_file_lease_holders_never_overlap(file_leases):
    assert never_both_hold(file_leases, unique()) == 20


def test_file_lease_held_elsewhere_is_a_conflict_after_wait(file_leases):
    cid = unique()
    with file_leases.hold(cid):
        start = time.monotonic()
        with pytest.raises(Conflict) as err, file_leases.hold(cid, wait=0.3):
            pass
        assert 0.3 <= time.monotonic() - start < 2
        assert cid in str(err.value) and err.value.hint
    with file_leases.hold(cid):  # released on exit
        pass


def test_file_leases_are_per_credential(file_leases):
    with file_leases.hold(unique()), file_leases.hold(unique()):
        pass


def test_file_lease_is_released_when_the_block_raises(file_leases):
    cid = unique()
    with pytest.raises(RuntimeError), file_leases.hold(cid):
        raise RuntimeError("boom")
    with file_leases.hold(cid):
        pass


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "UPPER", "a/b"])
def test_lease_ids_must_be_credential_ids(file_leases, bad):
    with pytest.raises(InvalidInput), file_leases.hold(bad):
        pass


HOLDER = """
import sys, time
from broker.locks import {cls}
from broker.settings import Settings
leases = {make}
with leases.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def start_holder(cls: str, make: str, credential_id: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(cls=cls, make=make), credential_id],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()


def test_file_lease_of_a_killed_holder_is_freed_at_once(tmp_path, file_leases):
    cid = unique()
    holder = start_holder("FileLeases", f"FileLeases({str(file_leases.directory)!r})", cid)
    try:
        with pytest.raises(Conflict), file_leases.hold(cid):
            pass
    finally:
        kill(holder)
    with file_leases.hold(cid, wait=1):
        pass


def test_leases_follow_settings(tmp_path, azurite):
    local = leases_from_settings(Settings(vault_url="https://v", state_dir=tmp_path))
    assert isinstance(local, FileLeases) and local.directory == tmp_path / "locks"
    assert isinstance(leases_from_settings(Settings(vault_url="https://v", storage=azurite)),
                      BlobLeases)


def test_blob_lease_holders_never_overlap(blob_leases):
    assert never_both_hold(blob_leases, unique(), workers=3, rounds=3) == 9


def test_blob_lease_held_elsewhere_is_a_conflict_then_free_after_release(blob_leases, azurite):
    other = BlobLeases.from_settings(Settings(vault_url="https://v", storage=azurite,
                                              lease_seconds=LEASE_SECONDS))
    cid = unique()
    with blob_leases.hold(cid), pytest.raises(Conflict), other.hold(cid, wait=0.5):
        pass
    with other.hold(cid):
        pass


@pytest.mark.slow
def test_blob_lease_is_renewed_while_held_and_expires_when_the_holder_dies(blob_leases, azurite):
    """The renewal keeps one lease past its duration while a killed holder's lease lapses."""
    settings = f"Settings(vault_url='https://v', storage={azurite!r}, lease_seconds=15)"
    killed, renewed = unique(), unique()
    holder = start_holder("BlobLeases", f"BlobLeases.from_settings({settings})", killed)
    kill(holder)
    killed_at = time.monotonic()
    with blob_leases.hold(renewed):
        renewed_at = time.monotonic()
        with pytest.raises(Conflict), blob_leases.hold(killed):
            pass
        with blob_leases.hold(killed, wait=LEASE_SECONDS + 10):
            freed_after = time.monotonic() - killed_at
        # past the lease's own duration, only the renewal thread can still be holding it
        time.sleep(max(0.0, renewed_at + LEASE_SECONDS + 1 - time.monotonic()))
        with pytest.raises(Conflict), blob_leases.hold(renewed):
            pass
    assert LEASE_SECONDS - 2 < freed_after < LEASE_SECONDS + 5
