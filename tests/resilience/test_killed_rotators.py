"""Rotator processes killed with SIGKILL at random points lose nothing and strand no lease.

One test drives 50 rotation attempts through a series of rotator processes
(`tests/support/chaos.py`), alternating blob leases on Azurite (15 s) and file leases, and
kills each one at a seeded random moment (during a random one of its attempts), or exactly
between redeem and write (the `Rotator.after_redeem` seam). The last blob lease holder is killed
holding its lease; file lease holders take the last attempts meanwhile, the first of them
killed between redeem and write too. No rotator is given more than a few attempts and kills
are placed by attempt, not by wall time, so the plan is the same on a fast machine as on a busy
one. Between runs it checks that no version ever disappears; at the end that every stored token
is one Entra still accepts, that every file lease is free at once and every blob lease within
its duration of the last holder's kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.credentials import Status
from broker.errors import Conflict
from broker.locks import BlobLeases
from tests.support.broker import consented_credential, make_broker, settings_for
from tests.support.chaos import LEASE_SECONDS, read_progress

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 50
CREDENTIALS = 4
SEED = int(os.environ.get("RESILIENCE_SEED", "20240611"))
# a random kill lands this long after the rotator starts its attempt number `kill_at` (random
# too): within that rotation on a busy machine, a few rotations later on a fast one
KILL_AFTER_S = (0.0, 0.5)
LEASE_MARGIN_S = 5.0  # acquisition polls with jittered, growing intervals of up to 2 s
START_TIMEOUT_S = 30.0
FILE_TAIL = 30  # the last attempts, by file lease holders while the stranded blob lease runs out
# no rotator is given more attempts than this: how many it gets through before a random kill
# depends on the machine's speed, and the plan (blob and file holders in turn, every third one
# killed between redeem and write) must not
RUN_BUDGET = 6


@dataclass
class Run:
    number: int
    blob: bool
    hang_at: int  # 0: killed at a random moment; K: killed after its K-th redeem, unwritten
    budget: int
    first_line: int  # index of this run's first line in the progress file
    ids: list[str]
    process: subprocess.Popen | None = None
    killed_at: float | None = None
    hung: bool = False  # it did reach its K-th redeem (not every rotation redeems)
    lines: list[list[str]] = field(default_factory=list)
    log: str = ""  # its stderr: broker records at DEBUG, unredacted, for the secret scan

    @property
    def label(self) -> str:
        how = f"between redeem {self.hang_at} and its write" if self.hang_at \
            else "at a random moment"
        return f"run {self.number} ({'blob' if self.blob else 'file'} leases, killed {how})"

    def rotated_versions(self) -> set[str]:
        return {words[3] for words in self.lines if words[0] == "done" and words[2] == "rotated"}


def token_versions(broker, credential_id):
    return [v for v in broker.versions(credential_id) if not v.is_placeholder]


def snapshot(broker, ids) -> dict[str, set[str]]:
    return {cid: {v.version for v in token_versions(broker, cid)} for cid in ids}


def wait_for(predicate, run: Run, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if run.process.poll() is not None and not predicate():
            pytest.fail(f"{run.label}: the rotator exited ({run.process.returncode}) before "
                        f"{what}")
        if time.monotonic() > deadline:
            pytest.fail(f"{run.label}: no {what} within {timeout} s")
        time.sleep(0.02)


def free_blob_lease(leases: BlobLeases, ids: list[str]) -> str:
    """A credential whose blob lease nobody holds now (waiting one out if all are held)."""
    for cid in ids:
        try:
            with leases.hold(cid):
                return cid
        except Conflict:
            continue
    with leases.hold(ids[0], wait=LEASE_SECONDS + LEASE_MARGIN_S):
        return ids[0]


def start_and_kill(run: Run, workdir: Path, storage: str, seed: int, *, kill_at: int,
                   kill_after: float, scan_output) -> None:
    """Start the run's rotator, SIGKILL it when the run says, and scan what it printed."""
    out, err = workdir / f"run-{run.number}.out", workdir / f"run-{run.number}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        run.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.chaos", str(workdir),
             "--ids", ",".join(run.ids), "--attempts", str(run.budget), "--seed", str(seed),
             "--hang-at", str(run.hang_at), "--storage", storage],
            cwd=ROOT, env=dict(os.environ), stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL)

    def lines() -> list[list[str]]:
        return read_progress(workdir)[run.first_line:]

    def hanging() -> bool:
        return sum(words[0] == "redeemed" for words in lines()) >= run.hang_at

    try:
        wait_for(lambda: any(words[0] == "ready" for words in lines()), run, "ready line")
        if run.hang_at:
            wait_for(lambda: hanging() or run.process.poll() is not None, run,
                     f"redeem {run.hang_at}")
            run.hung = hanging()
        else:
            wait_for(lambda: run.process.poll() is not None
                     or sum(words[0] == "start" for words in lines()) >= kill_at, run,
                     f"attempt {kill_at}")
            time.sleep(kill_after)
        if run.process.poll() is None:
            os.kill(run.process.pid, signal.SIGKILL)
            run.killed_at = time.monotonic()
        run.process.wait(30)
        time.sleep(0.2)  # a write the dead process had already sent still lands
    finally:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
    run.log = err.read_text(errors="replace")
    scan_output(f"rotator {run.label} stdout", out.read_bytes())
    scan_output(f"rotator {run.label} stderr", run.log)
    assert run.process.returncode in (0, -signal.SIGKILL), (run.label, err.read_text())
    assert not run.hung or run.killed_at is not None, f"{run.label} was not killed"


@pytest.fixture
def background():
    """Threads the test starts, joined at teardown even when the test fails: a thread left
    polling for a lease (with `random` jitter) would change the global random state under a
    later test, which Hypothesis reports as a strategy using `random`."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        if thread.is_alive():  # started and not done
            thread.join(LEASE_SECONDS + LEASE_MARGIN_S + 30)


def test_rotators_killed_at_random_points_lose_no_token_and_strand_no_lease(
        devstack, azurite, tmp_path, scan_output, background):
    rng = random.Random(SEED)
    broker = make_broker(devstack, tmp_path)  # file leases in the same directory as the rotators
    blob_leases = BlobLeases.from_settings(settings_for(devstack, tmp_path, storage=azurite,
                                                        lease_seconds=LEASE_SECONDS))
    ids = [consented_credential(broker).id for _ in range(CREDENTIALS)]
    seen = snapshot(broker, ids)
    ever_seen = {cid: set(versions) for cid, versions in seen.items()}
    runs: list[Run] = []
    attempted = 0
    stranded: Run | None = None
    freed_after: dict[str, float] = {}
    lease_errors: list[BaseException] = []

    def take_every_blob_lease(killed_at: float) -> None:
        """Every blob lease is free again within its duration after the last blob holder's
        kill (waited for in the background while the file-lease rotators go on)."""
        try:
            for cid in ids:
                with blob_leases.hold(cid, wait=LEASE_SECONDS + LEASE_MARGIN_S + 5):
                    freed_after[cid] = time.monotonic() - killed_at
        except BaseException as exc:  # reported by the main thread
            lease_errors.append(exc)

    leases_thread = threading.Thread(target=lambda: take_every_blob_lease(stranded.killed_at),
                                     daemon=True)
    background.append(leases_thread)

    while attempted < ATTEMPTS:
        number = len(runs)
        remaining = ATTEMPTS - attempted
        first_line = len(read_progress(tmp_path))
        first_of_tail = runs[-1] is stranded if runs else False
        hang = number % 3 == 2 or first_of_tail
        if stranded is None and remaining <= FILE_TAIL:
            # the last blob lease holder: killed between redeem and write, on a credential
            # whose lease is free (so that it does redeem), leaving that lease held
            run = stranded = Run(number, blob=True, hang_at=1, budget=1, first_line=first_line,
                                 ids=[free_blob_lease(blob_leases, ids)])
        elif stranded is None:  # blob and file lease holders in turn
            budget = min(RUN_BUDGET, remaining - FILE_TAIL)
            run = Run(number, blob=number % 2 == 1, budget=budget,
                      hang_at=rng.randint(1, min(4, budget)) if hang else 0,
                      first_line=first_line, ids=ids)
        else:  # file lease holders only, while the stranded blob lease runs out; the first
            # of them is killed between redeem and write, meanwhile
            budget = min(RUN_BUDGET, remaining)
            run = Run(number, blob=False, hang_at=rng.randint(1, min(4, budget)) if hang else 0,
                      budget=budget, first_line=first_line, ids=ids)
        runs.append(run)
        assert number < 60, "the rotators made no progress"
        seed = rng.randrange(2 ** 32)
        start_and_kill(run, tmp_path, azurite if run.blob else "", seed,
                       kill_at=rng.randint(1, run.budget), kill_after=rng.uniform(*KILL_AFTER_S),
                       scan_output=scan_output)
        if run is stranded:
            assert run.hung and run.killed_at is not None
            leases_thread.start()

        run.lines = read_progress(tmp_path)[run.first_line:]
        attempted += sum(w[0] == "start" for w in run.lines)
        now = snapshot(broker, ids)
        for cid in ids:  # a kill never takes a version away
            assert seen[cid] <= now[cid], f"{run.label} lost versions of {cid}"
            ever_seen[cid] |= now[cid]
        if run.hung:
            written = set().union(*(now[cid] - seen[cid] for cid in ids))
            # only completed rotations wrote: the one killed after its redeem wrote nothing
            assert written == run.rotated_versions(), run.label
            hung = [w[1] for w in run.lines if w[0] == "redeemed"][-1]
            if run.blob:
                # the killed holder's blob lease outlives it (until it expires) ...
                with pytest.raises(Conflict), blob_leases.hold(hung):
                    pass
            else:
                # ... while the OS frees a killed holder's file lock at once
                with broker.leases.hold(hung):
                    pass
        seen = now

    assert attempted == ATTEMPTS
    assert runs[-1] is not stranded and not runs[-1].blob
    # after the last kill, every file lease is free at once
    for cid in ids:
        with broker.leases.hold(cid):
            pass

    rotated = set().union(*(run.rotated_versions() for run in runs))
    assert len(rotated) >= 10, "too few rotations completed for the test to mean anything"
    assert any(run.hung and not run.blob for run in runs)
    # the scanned output is the rotators' real log, not an empty file
    assert any("stored version" in run.log for run in runs)
    for cid in ids:
        versions = token_versions(broker, cid)
        present = {v.version for v in versions}
        assert ever_seen[cid] == present, f"versions of {cid} disappeared"
        credential = broker.get_credential(cid)
        assert credential.stored_status is Status.ACTIVE
        obtained = [v.obtained_at for v in versions]
        assert obtained == sorted(set(obtained), reverse=True), "versions not strictly ordered"
        # the latest enabled version, and every one before it, holds a token Entra accepts
        latest_token, latest = broker.vault.read_token(cid)
        assert latest.version == versions[0].version and latest.enabled
        assert broker.identity.redeem(credential, latest_token).refresh_token
        for version in versions[1:]:
            assert version.enabled
            token, _ = broker.vault.read_token(cid, version.version)
            assert broker.identity.redeem(credential, token).refresh_token
    assert rotated <= set().union(*ever_seen.values())

    leases_thread.join(LEASE_SECONDS + LEASE_MARGIN_S + 30)
    print(f"seed {SEED}: {len(runs)} rotators, {sum(r.killed_at is not None for r in runs)} "
          f"killed ({sum(r.hung for r in runs)} between redeem and write), "
          f"{len(rotated)} rotations completed; blob leases free again after {freed_after}")
    assert not leases_thread.is_alive()
    assert lease_errors == []
    assert set(freed_after) == set(ids)
    assert max(freed_after.values()) <= LEASE_SECONDS + LEASE_MARGIN_S, freed_after
