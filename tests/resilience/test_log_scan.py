"""The resilience suite's secret scan (conftest.py) fails the session when a token reaches a
log record or the output of a child process a test handed to `scan_output`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from broker.logs import get_logger, redact

ROOT = Path(__file__).resolve().parents[2]
PLANT = "BROKER_RESILIENCE_PLANTED_LEAK"


@pytest.mark.skipif(not os.environ.get(PLANT), reason="only run by the test below")
def test_planted_leak_in_a_log_record():
    value = os.environ[PLANT] + "-log"
    redact.register(value)
    get_logger("broker.planted").info("about to leak %s", value)


@pytest.mark.skipif(not os.environ.get(PLANT), reason="only run by the test below")
def test_planted_leak_in_a_child_process_output(scan_output):
    value = os.environ[PLANT] + "-child"
    redact.register(value)  # as reading the token back from the vault does
    scan_output("rotator stderr", f"2030-01-01 broker.rotation INFO redeemed {value}\n".encode())


def test_the_session_fails_when_a_secret_reaches_a_log_or_a_child_process_output():
    value = f"planted-secret-{uuid.uuid4().hex}"
    here = Path(__file__).relative_to(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         f"{here}::test_planted_leak_in_a_log_record",
         f"{here}::test_planted_leak_in_a_child_process_output"],
        cwd=ROOT, env={**os.environ, PLANT: value}, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "secret value(s) appeared in resilience logs or output" in output
    assert "test_planted_leak_in_a_log_record (log broker.planted)" in output
    assert "test_planted_leak_in_a_child_process_output (rotator stderr)" in output
    assert value not in output  # the report names where, never the value
