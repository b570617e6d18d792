"""Rotation: N due credentials through the real path against Key Vault's service limits.

Seeds N credentials on a fast devstack, each with its own valid refresh token, then restarts
the same state with `--vault-throttle` and network delay (token endpoint 100 ms, vault 10 ms)
and runs what production runs on the night 65 days later, when every token is within 30 days
of expiry. Reported separately:

- the due-scan (`jobs.enqueue_due`): its wall time and the vault requests it made;
- the rotation window: from the first message taken to the queue drained, with the creates
  per second against the vault's 30/s, and the requests per rotation by endpoint, counted at
  the server (devstack's `GET /stats` where it has one, the vault's own counter otherwise).

One instance (the default) drains an in-process queue with `--threads` worker threads, as
`broker worker` does. `--instances K` runs K worker processes, each with `--threads` threads,
against one queue and one throttled vault, with blob leases and the shared pacing blob in
Azurite (what K Function instances share in Azure); it reports the most create attempts the
vault saw in any 10 s window and the share answered 429. Last, every credential's current
token is redeemed: a token the emulator refuses is counted as lost.

    python -m bench.rotation --credentials 5000 [--threads 24] [--instances 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench.common import ROOT, devstack, report

LIMIT_CREATES_PER_S = 30.0  # Key Vault: 300 secret creates per 10 s per vault
AGE_DAYS = 65  # within 30 days of the 90-day expiry: due that night whatever the nightly share


def vault_stats(env: dict[str, str]) -> dict:
    return requests.get(env["BROKER_VAULT_URL"] + "_devstack/stats",
                        verify=env["REQUESTS_CA_BUNDLE"], timeout=10).json()


def server_counts(env: dict[str, str]) -> Counter:
    """Requests served so far by endpoint, as the servers counted them: devstack's admin
    `/stats` (per service, method and route) when it has one, else the vault's own total."""
    response = requests.get(env["DEVSTACK_ADMIN_URL"] + "/stats",
                            verify=env["REQUESTS_CA_BUNDLE"], timeout=10)
    counts: Counter = Counter()
    if response.status_code == 200 and "requests" in response.json():
        for row in response.json()["requests"]:
            counts[f"{row['service']} {row['method']} {row['route']}"] += row["count"]
    else:
        counts["vault (all endpoints)"] = vault_stats(env)["requests"]
    return counts


def per_item(before: Counter, after: Counter, items: int) -> dict[str, float]:
    if not items:
        return {}
    return {k: round((after[k] - before[k]) / items, 3) for k in sorted(after)
            if after[k] - before[k] > 0 and "_devstack" not in k}


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


def drain(broker, queues, threads: int, *, idle_s: float, timeout_s: float) -> tuple[list, float]:
    """Worker threads doing what `broker worker` and the Functions host do per message, until
    the queue has been empty for `idle_s`; returns the results and the window's length (from
    the first message taken to the last one settled)."""
    from broker import jobs
    from broker.runtime.queues import QueueProcessor

    results: list = []
    lock = threading.Lock()
    stop = threading.Event()
    marks: dict[str, float] = {}

    def handler(message):
        result = jobs.handle_message(broker, message.body)
        with lock:
            results.append(result)

    def consume() -> None:
        processor = QueueProcessor(queues)
        while not stop.is_set():
            batch = queues.rotations.receive(1)
            if not batch:
                queues.rotations.wait(0.2)
                continue
            with lock:
                marks.setdefault("first", time.monotonic())
            for message in batch:
                processor.process(message, handler)
            with lock:
                marks["last"] = time.monotonic()

    workers = [threading.Thread(target=consume, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s
    empty_since = None
    while time.monotonic() < deadline:
        if queues.rotations.count() == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= idle_s:
                break
        else:
            empty_since = None
        time.sleep(0.1)
    stop.set()
    for worker in workers:
        worker.join()
    window = marks.get("last", 0.0) - marks.get("first", 0.0)
    return results, window


def lost(broker, ids: list[str], threads: int) -> list[str]:
    """Credentials whose current token the emulator no longer accepts."""
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


def outcomes(results: list) -> Counter:
    """Rotation outcomes, or validation results, by name."""
    return Counter("none" if r is None else getattr(r, "outcome", None)
                   or getattr(r, "result", "?") for r in results)


# -- one worker process of --instances -----------------------------------------------------------


def worker_main(args) -> None:
    """One of K instances: a Broker with blob leases and the shared pacer, draining the shared
    storage queue with its threads until it stays empty."""
    from broker.rotation import RetryPolicy
    from broker.runtime.queues import queues_from_settings
    from devstack.stack import read_env
    from tests.support.broker import RecordingNotifier, make_broker

    env = read_env(Path(args.env_file))
    broker = make_broker(env, Path(args.state), notifier=RecordingNotifier(),
                         retry=RetryPolicy(), storage=args.storage,
                         rotate_concurrency=args.threads,
                         vault_creates_per_10s=args.creates_per_10s)
    queues = queues_from_settings(broker.settings)
    results, window = drain(broker, queues, args.threads, idle_s=3.0,
                            timeout_s=max(300.0, args.credentials / 5))
    pacer = broker.vault.pacer
    print(json.dumps({"outcomes": outcomes(results), "window_s": window,
                      "pacing_claims": getattr(pacer, "claims", None),
                      "pacing_conflicts": getattr(pacer, "conflicts", None)}), flush=True)


def run_instances(args, env: dict[str, str], tmp: Path, storage: str) -> tuple[Counter, float,
                                                                                  dict]:
    env_file = Path(env["DEVSTACK_STATE_DIR"]) / "env"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "bench.rotation", "--worker", "--env-file", str(env_file),
         "--state", str(tmp / f"instance-{i}"), "--storage", storage,
         "--threads", str(args.threads), "--creates-per-10s", str(args.creates_per_10s),
         "--credentials", str(args.credentials)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(args.instances)]
    totals: Counter = Counter()
    windows, claims, conflicts = [], 0, 0
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0 or not out.strip():
            raise RuntimeError(f"an instance failed: {err[-3000:]}")
        data = json.loads(out.strip().splitlines()[-1])
        totals.update(data["outcomes"])
        windows.append(data["window_s"])
        claims += data["pacing_claims"] or 0
        conflicts += data["pacing_conflicts"] or 0
    return totals, max(windows), {"claims": claims, "conflicts": conflicts}


# -- the benchmark -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=24, help="worker threads per instance")
    parser.add_argument("--instances", type=int, default=1,
                        help="worker processes sharing one queue, blob leases and pacing")
    parser.add_argument("--creates-per-10s", type=int, default=290,
                        help="the broker's pacing (BROKER_VAULT_CREATES_PER_10S)")
    parser.add_argument("--latency", default="vault=10,entra=100")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--env-file", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return

    from broker import jobs
    from broker.queue import Queues
    from broker.rotation import RetryPolicy
    from broker.runtime.queues import MemoryQueue, queues_from_settings
    from tests.support.broker import RecordingNotifier, make_broker

    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp_name:
        tmp = Path(tmp_name)
        state = tmp / "devstack"
        started = time.monotonic()
        with devstack(state_dir=state) as env:
            seeder = make_broker(env, tmp, vault_creates_per_10s=100_000)
            ids = seed(seeder, args.credentials, "bench", threads=16)
        seed_s = time.monotonic() - started

        with devstack("--vault-throttle", "--latency", args.latency, state_dir=state) as env, \
                _storage(args.instances > 1, tmp) as storage:
            broker = make_broker(env, tmp, notifier=RecordingNotifier(), retry=RetryPolicy(),
                                 rotate_window_hours=0, rotate_concurrency=args.threads,
                                 vault_creates_per_10s=args.creates_per_10s,
                                 storage=storage)
            if storage:
                queues = queues_from_settings(broker.settings)
                queues.rotations.clear()
            else:
                queues = Queues(MemoryQueue("rotations"), MemoryQueue("rotations-poison"))

            night = datetime.now(UTC) + timedelta(days=AGE_DAYS)
            scan_before = server_counts(env)
            scan_started = time.monotonic()
            due = {item.credential_id for item in jobs.enqueue_due(broker, queues.rotations,
                                                                   now=night)}
            scan_s = time.monotonic() - scan_started
            scan_after = server_counts(env)
            stats_before = vault_stats(env)

            if args.instances > 1:
                totals, window_s, pacing = run_instances(args, env, tmp, storage)
            else:
                results, window_s = drain(broker, queues, args.threads, idle_s=1.0,
                                          timeout_s=max(120.0, args.credentials / 5))
                totals, pacing = outcomes(results), {}
            rotation_after = server_counts(env)
            stats_after = vault_stats(env)
            poisoned = queues.poison.count()
            missing = lost(broker, ids, threads=32)

    rotated = totals.get("rotated", 0)
    failed = totals.get("error", 0) + totals.get("needs-consent", 0)
    attempts = stats_after["create_attempts"] - stats_before["create_attempts"]
    throttled = stats_after["creates_throttled"] - stats_before["creates_throttled"]
    creates_per_s = rotated / window_s if window_s else 0.0
    report(
        "rotation",
        credentials=args.credentials,
        instances=args.instances,
        worker_threads=args.threads,
        due=len(due),
        rotated=rotated,
        skipped=totals.get("skipped", 0),
        lost=len(missing),
        failed=failed,
        poisoned=poisoned,
        due_scan={"wall_s": round(scan_s, 2),
                  "requests_by_endpoint": per_item(scan_before, scan_after, 1)},
        wall_s=round(window_s, 2),
        creates_per_s=round(creates_per_s, 2),
        limit_creates_per_s=LIMIT_CREATES_PER_S,
        ratio=round(creates_per_s / LIMIT_CREATES_PER_S, 3),
        requests_per_rotation=per_item(scan_after, rotation_after, rotated),
        create_attempts=attempts,
        vault_429s=throttled,
        share_429=round(throttled / attempts, 4) if attempts else 0.0,
        peak_create_attempts_10s=stats_after["peak_create_attempts_10s"],
        pacing_creates_per_10s=args.creates_per_10s,
        pacing=pacing or "in-process window",
        latency=args.latency,
        seed_s=round(seed_s, 1),
    )


def _storage(enabled: bool, tmp: Path):
    """Azurite for --instances (leases, queue and pacing shared like Azure Storage), else none."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext("")
    from tests.support.azurite import running_azurite

    return running_azurite(tmp / "azurite")


if __name__ == "__main__":
    main()
