"""The benchmarks still run: each once at a tiny size, its last line a JSON report.

Their numbers are not checked here (speed is measured, not asserted); what is checked is that
each report has the fields the README's table is built from and that nothing was lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FIELDS = {
    "rotation": {"rotated", "lost", "failed", "wall_s", "creates_per_s", "limit_creates_per_s",
                 "ratio", "vault_429s", "naive"},
    "resolver": {"resolver", "get_secret", "vault_requests_per_100k_resolves",
                 "vault_requests_per_refresh_interval"},
    "coldstart": {"results", "overhead"},
    "site": {"p50_ms", "p99_ms", "requests_per_s", "errors"},
}


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-m", "bench", "--small"], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {report["benchmark"]: report for report in lines}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_benchmark_prints_its_json_report(reports, name):
    assert name in reports, f"no report from bench.{name}"
    assert FIELDS[name] <= reports[name].keys()
    assert "machine" in reports[name]


def test_rotation_benchmark_loses_and_fails_nothing(reports):
    rotation = reports["rotation"]
    assert rotation["rotated"] == rotation["due"] > 0
    assert rotation["lost"] == 0 and rotation["failed"] == 0


def test_site_benchmark_gets_only_successful_pages(reports):
    assert reports["site"]["errors"] == 0 and reports["site"]["requests"] > 0
