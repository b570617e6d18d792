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
    "rotation": {"rotated", "lost", "failed", "poisoned", "wall_s", "creates_per_s",
                 "limit_creates_per_s", "ratio", "vault_429s", "share_429",
                 "peak_create_attempts_10s", "due_scan", "requests_per_rotation"},
    "fleet": {"due_scan", "validation_timer", "validation_pass", "versions"},
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


def test_rotation_costs_at_most_four_requests_and_the_due_scan_only_its_listing(reports):
    rotation = reports["rotation"]
    vault = sum(v for k, v in rotation["requests_per_rotation"].items() if k.startswith("vault"))
    assert vault <= 3.5  # GET, PUT, read-back (plus the first request's 401 challenge)


def test_fleet_benchmark_writes_no_version_when_validating(reports):
    fleet = reports["fleet"]
    assert fleet["validation_pass"]["versions_written"] == 0
    assert fleet["validation_pass"]["validated"] == fleet["credentials"] > 0
    assert fleet["validation_timer"]["messages"] >= fleet["credentials"]
    assert fleet["due_scan"]["queue_sends"] == fleet["due_scan"]["due"]


def test_instances_mode_runs_and_loses_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "bench.rotation", "--credentials", "12", "--threads", "2",
         "--instances", "2"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rotated"] == report["due"] == 12
    assert report["lost"] == report["failed"] == report["poisoned"] == 0
    assert report["peak_create_attempts_10s"] <= 300


def test_site_benchmark_gets_only_successful_pages(reports):
    assert reports["site"]["errors"] == 0 and reports["site"]["requests"] > 0
