"""The resilience suite is held to the same secret scan as the integration suite.

Every log record created while a resilience test runs (raw, before any redaction), each test's
captured stdout, stderr and failure report, and whatever a test hands to `scan_output` (the
stdout and stderr of the rotator processes it killed) are searched at the end of the session
for every value `broker.logs.redact` knows: tokens and client secrets the vault wrote or read
in this process, and secret settings. The machinery is the integration suite's
(tests/support/secrets_seen.py); only the path prefix differs.
"""

from __future__ import annotations

import os

import pytest

from tests.support.secrets_seen import LeakScanner, scan_report, scanned_session

scanner = LeakScanner(prefix="tests/resilience/")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_resilience_logs_or_output():
    yield from scanned_session(scanner, "resilience")


@pytest.fixture
def scan_output():
    """`scan_output(label, text)`: add a child process's output to the session's secret scan."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]

    def add(label: str, text: str | bytes | None) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        scanner.add(f"{test} ({label})", text)

    return add


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    scan_report(scanner, outcome.get_result())
