"""Rotation: N due credentials through the real path against Key Vault's service limits.

Seeds N credentials on a fast devstack, each with its own valid refresh token, then restarts
the same state with `--vault-throttle` and network delay (token endpoint 100 ms, vault 10 ms)
and runs what production runs on the night 65 days later, when every token is within 30 days
of expiry: the due-scan enqueues one message per credential, worker threads drain the queue
through `jobs.rotate_message` under per-credential leases, paced by the broker's window limiter.
Then a naive sequential `broker.rotate` loop over a sample (also rotated by the queue run) is
timed for comparison. Last, every credential's latest token is redeemed: a token the emulator
refuses is counted as lost.

    python -m bench.rotation --credentials 5000 [--threads 24] [--naive-sample 60]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench.common import devstack, report

LIMIT_CREATES_PER_S = 30.0  # Key Vault: 300 secret creates per 10 s per vault
AGE_DAYS = 65  # within 30 days of the 90-day expiry: due that night whatever the nightly share


def vault_stats(env: dict[str, str]) -> dict:
    return requests.get(env["BROKER_VAULT_URL"] + "_devstack/stats",
                        verify=env["REQUESTS_CA_BUNDLE"], timeout=10).json()


def seed(broker, count: int, prefix: str, threads: int) -> list[str]:
    """`count` CPV credentials, each holding a distinct valid refresh token."""
    from broker.credentials import Source
    from tests.support.broker import consented_credential, spec

    origin = consented_credential(broker, credential_id=f"{prefix}-origin")
    token, _ = broker.vault.read_token(origin.id)

    def one(i: int) -> str:
        credential = broker.add_credential(spec(f"{prefix}-{i:05d}"))
        # each redemption returns a fresh token while the old one stays valid (Entra's rule)
        fresh = broker.identity.redeem(credential, token)
        broker.vault.write_token(credential, fresh.refresh_token, source=Source.IMPORT,
                                 obtained_at=datetime.now(UTC),
                                 consented_by="admin@contoso.example", mfa=True)
        return credential.id

    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(one, range(count)))
    broker.vault.set_enabled(origin.id, broker.vault.latest_version(origin.id).version, False)
    return ids


def drain(broker, queues, threads: int, expected: int, timeout_s: float) -> list:
    """Worker threads doing what `broker worker` and the Functions host do per message."""
    from broker import jobs
    from broker.runtime.queues import QueueProcessor

    results: list = []
    lock = threading.Lock()
    stop = threading.Event()

    def handler(message):
        result = jobs.rotate_message(broker, message.body)
        with lock:
            results.append(result)

    def consume() -> None:
        processor = QueueProcessor(queues)
        while not stop.is_set():
            batch = queues.rotations.receive(1)
            if not batch:
                queues.rotations.wait(0.2)
                continue
            for message in batch:
                processor.process(message, handler)

    workers = [threading.Thread(target=consume, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            done = len(results)
        if done >= expected and queues.rotations.count() == 0:
            break
        time.sleep(0.2)
    stop.set()
    for worker in workers:
        worker.join()
    return results


def lost(broker, ids: list[str], threads: int) -> list[str]:
    """Credentials whose latest enabled token the emulator no longer accepts."""
    from broker.errors import BrokerError

    # every bench credential is a CPV credential for contoso: one view serves to redeem them all
    app_view = broker.get_credential(ids[0])

    def check(credential_id: str) -> str | None:
        try:
            token, _ = broker.vault.read_token(credential_id)
            broker.identity.redeem(app_view, token)
        except BrokerError:
            return credential_id
        return None

    with ThreadPoolExecutor(threads) as pool:
        return [c for c in pool.map(check, ids) if c]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=24, help="rotation worker threads")
    parser.add_argument("--naive-sample", type=int, default=60,
                        help="credentials rotated one by one for the comparison")
    parser.add_argument("--creates-per-10s", type=int, default=290,
                        help="the broker's pacing; the bench is the vault's only writer")
    parser.add_argument("--latency", default="vault=10,entra=100")
    args = parser.parse_args(argv)

    from broker.queue import Queues
    from broker.runtime.queues import MemoryQueue
    from tests.support.broker import RecordingNotifier, make_broker

    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp:
        state = Path(tmp) / "devstack"
        started = time.monotonic()
        with devstack(state_dir=state) as env:
            seeder = make_broker(env, Path(tmp), vault_creates_per_10s=100_000)
            ids = seed(seeder, args.credentials, "bench", threads=16)
            naive_ids = seed(seeder, args.naive_sample, "naive", threads=16)
        seed_s = time.monotonic() - started

        with devstack("--vault-throttle", "--latency", args.latency, state_dir=state) as env:
            broker = make_broker(env, Path(tmp), notifier=RecordingNotifier(),
                                 rotate_window_hours=0, rotate_concurrency=args.threads,
                                 vault_creates_per_10s=args.creates_per_10s)
            queues = Queues(MemoryQueue("rotations"), MemoryQueue("rotations-poison"))
            before = vault_stats(env)

            started = time.monotonic()
            from broker import jobs

            night = datetime.now(UTC) + timedelta(days=AGE_DAYS)
            due = {item.credential_id
                   for item in jobs.enqueue_due(broker, queues.rotations, now=night)}
            results = drain(broker, queues, args.threads, expected=len(due),
                            timeout_s=max(120.0, args.credentials / 10))
            wall_s = time.monotonic() - started
            after = vault_stats(env)

            naive_started = time.monotonic()
            naive = [broker.rotate(c) for c in naive_ids]
            naive_s = time.monotonic() - naive_started

            rotated = [r for r in results if r is not None and r.outcome == "rotated"]
            failed = [r for r in results if r is not None and r.outcome in ("error",
                                                                              "needs-consent")]
            missing = lost(broker, ids + naive_ids, threads=32)

    naive_rotated = sum(1 for r in naive if r.outcome == "rotated")
    creates_per_s = len(rotated) / wall_s if wall_s else 0.0
    report(
        "rotation",
        credentials=args.credentials + len(naive_ids),
        due=len(due),
        rotated=len(rotated),
        lost=len(missing),
        failed=len(failed),
        poisoned=queues.poison.count(),
        wall_s=round(wall_s, 2),
        creates_per_s=round(creates_per_s, 2),
        limit_creates_per_s=LIMIT_CREATES_PER_S,
        ratio=round(creates_per_s / LIMIT_CREATES_PER_S, 3),
        vault_429s=after["throttled"] - before["throttled"],
        worker_threads=args.threads,
        pacing_creates_per_10s=args.creates_per_10s,
        latency=args.latency,
        naive={"credentials": len(naive_ids), "rotated": naive_rotated,
               "wall_s": round(naive_s, 2),
               "creates_per_s": round(naive_rotated / naive_s, 2) if naive_s else 0.0},
        seed_s=round(seed_s, 1),
    )


if __name__ == "__main__":
    main()
