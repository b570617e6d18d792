"""Site: the consent site's credential list with many credentials, under concurrent load.

Seeds N registered credentials in one environment tab (the worst case: one page lists them
all), serves the site the way App Service does (gunicorn, `easyauth` operator mode with App
Service's principal header), and loads `/?env=test` from a second process on loopback with a
bounded number of requests. Reports p50/p99 latency and requests/s.

    python -m bench.site [--credentials 1000] [--requests 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, devstack, percentile, report
from devstack import seed
from tests.support.process import server_process

# App Service's principal headers for a member of the operators' group (base64 JSON claims)
OPERATOR_GROUP = seed.OPERATOR_GROUP_ID
OPERATOR_HEADERS = {
    "X-MS-CLIENT-PRINCIPAL-NAME": "operator@fabrikam.example",
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(
        {"auth_typ": "aad", "claims": [{"typ": "groups", "val": OPERATOR_GROUP}]}).encode()
    ).decode(),
}
# what App Service sets when its authentication (Microsoft Entra ID) is in front of the app:
# without it the site refuses to trust the headers above
APP_SERVICE_AUTH = {"WEBSITE_AUTH_ENABLED": "True",
                    "WEBSITE_AUTH_DEFAULT_PROVIDER": "AzureActiveDirectory"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(broker, count: int) -> None:
    from tests.support.broker import spec

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: broker.add_credential(spec(f"site-{i:05d}")), range(count)))


def load(url: str, requests_total: int, concurrency: int, timeout_s: float) -> dict:
    """Runs in the second process: GET `url` `requests_total` times from `concurrency` threads."""
    import requests

    sessions = [requests.Session() for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + timeout_s

    def one(i: int) -> float | None:
        if time.monotonic() > deadline:
            return None
        session = sessions[i % concurrency]
        start = time.perf_counter()
        response = session.get(url, headers=OPERATOR_HEADERS, timeout=30)
        elapsed = time.perf_counter() - start
        return elapsed if response.status_code == 200 else -1.0

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for result in pool.map(one, range(requests_total)):
            if result is None:
                continue
            if result < 0:
                errors += 1
            else:
                latencies.append(result)
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "wall_s": round(wall, 2),
        "requests_per_s": round((len(latencies) + errors) / wall, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
    }


def answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # still starting, or a busy machine
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the load phase")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # the second process's entry
    args = parser.parse_args(argv)
    if args.load:
        print(json.dumps(load(args.load, args.requests, args.concurrency, args.timeout)))
        return

    from tests.support.broker import make_broker

    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp, devstack() as env:
        broker = make_broker(env, Path(tmp))
        started = time.monotonic()
        seed(broker, args.credentials)
        seed_s = time.monotonic() - started
        port = free_port()
        site_env = {**os.environ, **env, **APP_SERVICE_AUTH, "BROKER_OPERATOR_AUTH": "easyauth",
                    "BROKER_OPERATOR_GROUP_ID": OPERATOR_GROUP,
                    "BROKER_PUBLIC_URL": f"http://localhost:{port}",
                    "BROKER_STATE_DIR": str(Path(tmp) / "site-state"),
                    "BROKER_SECRET_KEY": broker.settings.secret_key}
        base = f"http://127.0.0.1:{port}"
        with server_process(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.workers), "--threads", str(args.threads),
                 "--worker-class", "gthread", "consent_web:create_app()"],
                log=Path(tmp) / "site.log", ready=lambda: answers(base + "/healthz"),
                what="the site", cwd=ROOT, env=site_env):
            url = base + "/?env=test"
            # the second process: loopback only, bounded in requests and time
            result = subprocess.run(
                [sys.executable, "-m", "bench.site", "--load", url, "--requests",
                 str(args.requests), "--concurrency", str(args.concurrency),
                 "--timeout", str(args.timeout)],
                cwd=ROOT, capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"the load process failed:\n{result.stderr[-3000:]}")
            measured = json.loads(result.stdout.strip().splitlines()[-1])

    report("site", credentials=args.credentials, page="/?env=test",
           server=f"gunicorn {args.workers} workers x {args.threads} threads",
           concurrency=args.concurrency, seed_s=round(seed_s, 1), **measured)


if __name__ == "__main__":
    main()
