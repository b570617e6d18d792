"""`python -m bench [--small]`: run every benchmark in its own process; print each JSON report.

`--small` runs each once at a tiny size (what CI does to keep them working); without it the sizes
are the ones the README's table reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.common import ROOT

FULL = {
    "rotation": ["--credentials", "5000"],
    "fleet": ["--credentials", "50000", "--validate", "1000"],
    "resolver": ["--seconds", "3"],
    "coldstart": ["--repeat", "5"],
    "site": ["--credentials", "1000", "--requests", "2000"],
}
SMALL = {
    "rotation": ["--credentials", "20", "--threads", "4"],
    "fleet": ["--credentials", "60", "--threads", "4"],
    "resolver": ["--seconds", "0.3"],
    "coldstart": ["--repeat", "1"],
    "site": ["--credentials", "20", "--requests", "40"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="tiny sizes, to check they still run")
    parser.add_argument("names", nargs="*", choices=[*FULL, []], help="benchmarks to run (all)")
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else FULL
    failed = 0
    for name in args.names or list(sizes):
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *sizes[name]], cwd=ROOT,
            capture_output=True, text=True,
        )
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            failed += 1
            print(json.dumps({"benchmark": name, "error": result.stderr.strip()[-2000:]}))
            continue
        print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
