"""Cold start: time and memory of `import function_app` and of `create_app()`.

Each measurement runs in a fresh interpreter (what a Consumption-plan instance does), against a
baseline that imports only the SDKs the code path needs, so the report shows our own overhead.

    python -m bench.coldstart [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from bench.common import ROOT, report

PROBE = """
import json, resource, sys, time
start = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
exec(sys.argv[1])
elapsed = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "max_rss_kb": after, "delta_rss_kb": after - before}))
"""

CASES = {
    # what the Functions host does when an instance starts
    "function_app": "import function_app",
    "function_app_sdks": "import azure.functions",
    # what gunicorn does when the web app starts
    "consent_web": "import consent_web; consent_web.create_app()",
    "consent_web_sdks": "import flask, flask_wtf",
    # what a timer invocation pulls in on first use
    "broker_service": "import broker.service",
    "broker_service_sdks": "import azure.identity, azure.keyvault.secrets, msal",
}


def measure(code: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, code], cwd=ROOT, capture_output=True, text=True,
            check=True, env={"PATH": "/usr/bin:/bin", "BROKER_VAULT_URL": "https://example.vault.azure.net/",
                             "BROKER_SECRET_KEY": "bench-only-not-a-secret"},
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "median_ms": round(statistics.median(r["seconds"] for r in runs) * 1000, 1),
        "max_rss_mb": round(statistics.median(r["max_rss_kb"] for r in runs) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    results = {name: measure(code, args.repeat) for name, code in CASES.items()}
    overhead = {
        name: {
            "ms": round(results[name]["median_ms"] - results[f"{name}_sdks"]["median_ms"], 1),
            "mb": round(results[name]["max_rss_mb"] - results[f"{name}_sdks"]["max_rss_mb"], 1),
        }
        for name in ("function_app", "consent_web", "broker_service")
    }
    for name, values in results.items():
        print(f"{name:24} {values['median_ms']:8.1f} ms {values['max_rss_mb']:8.1f} MB")
    report("coldstart", repeat=args.repeat, results=results, overhead=overhead)


if __name__ == "__main__":
    main()
