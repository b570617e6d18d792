"""The integration suite fails if any token or client secret reached a log or test output.

For the whole session every log record created while an integration test runs is captured
(raw, before any redaction), and so is each test's captured stdout, stderr and failure report.
At the end, every value `broker.logs.redact` knows (tokens and client secrets the vault wrote
or read, secret settings, explicitly registered values) is searched for in all of it.

Records are taken from logging's record factory rather than by a handler on the root logger:
a handler only sees a record after other handlers' filters (ours redact) may have rewritten it,
and never sees records of loggers that do not propagate.
"""

from __future__ import annotations

import pytest

from tests.support.secrets_seen import LeakScanner, scan_report, scanned_session

scanner = LeakScanner(prefix="tests/integration/")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs_or_output():
    yield from scanned_session(scanner, "integration")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    scan_report(scanner, outcome.get_result())
