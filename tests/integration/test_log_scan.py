"""The session-wide secret scan (see conftest.py) can fail, and sees what it must see."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from broker.logs import get_logger, install_filters, redact
from tests.integration.conftest import scanner
from tests.support.secrets_seen import LeakScanner

ROOT = Path(__file__).resolve().parents[2]
PLANT = "BROKER_TEST_PLANTED_LEAK"


def test_scanner_finds_a_planted_value_without_repeating_it():
    local = LeakScanner()
    planted = f"0.Aplanted-{uuid.uuid4().hex}"
    local.add("a (log)", "nothing here")
    local.add("b (Captured stdout call)", f"refresh_token={planted}&x=1")
    [leak] = local.find([planted, "", "absent-value-123"])
    assert leak.where == "b (Captured stdout call)"
    assert planted not in str(leak) and planted[:4] in str(leak)


def test_scanner_only_keeps_records_of_tests_under_its_prefix(monkeypatch):
    local = LeakScanner(prefix="tests/integration/")
    record = logging.LogRecord("broker.x", logging.INFO, __file__, 1, "value %s", ("v",), None)
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/unit/test_x.py::test_y (call)")
    local.add_record(record)
    assert list(local.texts) == []
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/integration/test_x.py::test_y (call)")
    local.add_record(record)
    local.add_record(record)
    assert list(local.texts) == [("tests/integration/test_x.py::test_y (log broker.x)", "value v")]


def test_records_are_scanned_raw_even_where_a_handler_redacts():
    # JWT-shaped, so the filter masks it, but not registered, so the session check ignores it
    planted = f"eyJhbGciOiJub25lIn0.eyJ{uuid.uuid4().hex}.c2ln"
    stream = io.StringIO()
    logger = get_logger(f"broker.test_log_scan.{uuid.uuid4().hex}")
    logger.addHandler(install_filters(logging.StreamHandler(stream)))
    logger.propagate = False
    try:
        logger.debug("debug from our code: %s", planted)
        try:
            raise RuntimeError(planted)
        except RuntimeError:
            logger.exception("with a traceback")
    finally:
        logger.handlers.clear()
    assert planted not in stream.getvalue()
    wheres = [leak.where for leak in scanner.find([planted])]
    assert len(wheres) == 2
    assert all(w.startswith(f"{__name__.replace('.', '/')}.py::") or "test_log_scan" in w
               for w in wheres)


@pytest.mark.skipif(not os.environ.get(PLANT), reason="only run by the test below")
def test_planted_leak():
    value = os.environ[PLANT]
    redact.register(value)
    get_logger("broker.planted").info("about to leak %s", value)
    print(f"and printed: {value}")  # what a test prints is scanned too


def test_the_session_fails_when_a_registered_secret_is_logged():
    value = f"planted-secret-{uuid.uuid4().hex}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         f"{Path(__file__).relative_to(ROOT)}::test_planted_leak"],
        cwd=ROOT, env={**os.environ, PLANT: value}, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "secret value(s) appeared in integration logs or output" in output
    assert "test_planted_leak (log broker.planted)" in output
    assert "test_planted_leak (Captured log call)" in output
    assert "test_planted_leak (Captured stdout call)" in output
    assert value not in output  # not even in pytest's own display of the captured log
