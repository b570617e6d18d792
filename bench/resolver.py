"""Resolver: `TokenResolver.refresh_token` on a hot URL against `SecretClient.get_secret`.

Reports ops/s and p50/p99 latency from 1 and 8 threads, the Key Vault requests the resolver
made per 100,000 resolves and per refresh interval, and the worst latency seen while the cache
refreshed in the background (it should not spike: callers keep the cached value meanwhile).

    python -m bench.resolver [--seconds 3] [--refresh-interval 1] [--latency 10]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.common import devstack, percentile, report


def vault_requests(env: dict[str, str]) -> int:
    stats = requests.get(env["BROKER_VAULT_URL"] + "_devstack/stats",
                         verify=env["REQUESTS_CA_BUNDLE"], timeout=10).json()
    return stats["requests"]


def run_threads(call, threads: int, seconds: float, sample_every: int = 64) -> dict:
    """Call `call()` from `threads` threads for `seconds`; sample every Nth call's latency."""
    counts = [0] * threads
    samples: list[list[float]] = [[] for _ in range(threads)]
    stop = threading.Event()

    def loop(i: int) -> None:
        n = 0
        perf = time.perf_counter
        while not stop.is_set():
            if n % sample_every == 0:
                t0 = perf()
                call()
                samples[i].append(perf() - t0)
            else:
                call()
            n += 1
        counts[i] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    latencies = [s for group in samples for s in group]
    return {
        "threads": threads,
        "ops": sum(counts),
        "ops_per_s": round(sum(counts) / elapsed),
        "p50_us": round(percentile(latencies, 50) * 1e6, 2),
        "p99_us": round(percentile(latencies, 99) * 1e6, 2),
        "max_us": round(max(latencies, default=0) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--refresh-interval", type=float, default=1.0,
                        help="the resolver's refresh interval (short, to see refreshes happen)")
    parser.add_argument("--latency", type=float, default=10.0, help="vault network delay, ms")
    args = parser.parse_args(argv)

    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    from broker import TokenResolver
    from tests.support.broker import consented_credential, make_broker

    with tempfile.TemporaryDirectory(prefix="bench-resolver-") as tmp, \
            devstack("--latency", f"vault={args.latency}") as env:
        broker = make_broker(env, Path(tmp))
        credential = consented_credential(broker)
        url = credential.secret_id

        resolver = TokenResolver(refresh_interval=args.refresh_interval)
        resolver.refresh_token(url)  # warm: the first call fetches
        before = vault_requests(env)
        resolved = {}
        for threads in (1, 8):
            resolved[threads] = run_threads(lambda: resolver.refresh_token(url), threads,
                                            args.seconds)
        vault_calls = vault_requests(env) - before
        total = sum(r["ops"] for r in resolved.values())
        measured_s = 2 * args.seconds
        resolver.close()

        client = SecretClient(env["BROKER_VAULT_URL"], DefaultAzureCredential(),
                              verify_challenge_resource=False)
        name = url.rstrip("/").rsplit("/", 1)[-1]
        client.get_secret(name)
        direct = {threads: run_threads(lambda: client.get_secret(name), threads,
                                       args.seconds, sample_every=1)
                  for threads in (1, 8)}
        client.close()

    report(
        "resolver",
        seconds_per_run=args.seconds,
        refresh_interval_s=args.refresh_interval,
        vault_latency_ms=args.latency,
        resolver={str(k): v for k, v in resolved.items()},
        get_secret={str(k): v for k, v in direct.items()},
        resolver_vault_requests=vault_calls,
        vault_requests_per_100k_resolves=round(vault_calls / total * 100_000, 4),
        vault_requests_per_refresh_interval=round(
            vault_calls / (measured_s / args.refresh_interval), 3),
        speedup_1_thread=round(resolved[1]["ops_per_s"] / max(direct[1]["ops_per_s"], 1)),
    )


if __name__ == "__main__":
    main()
