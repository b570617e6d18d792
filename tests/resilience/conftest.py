"""The resilience suite is held to the same secret scan as the integration suite.

Every log record created while a resilience test runs (raw, before any redaction), each test's
captured stdout, stderr and failure report, and whatever a test hands to `scan_output` (the
stdout and stderr of the rotator processes it killed) are searched at the end of the session
for every value `broker.logs.redact` knows: tokens and client secrets the vault wrote or read
in this process, and secret settings. The machinery is the integration suite's
(tests/support/secrets_seen.py); only the path prefix differs.
"""

from __future__ import annotations

import logging
import os

import pytest

from broker.logs import redact
from tests.support.secrets_seen import LeakScanner, RecordFactory

PREFIX = "tests/resilience/"
OUR_LOGGERS = ("broker", "consent_web", "function_app")

scanner = LeakScanner(prefix=PREFIX)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_resilience_logs_or_output():
    factory = RecordFactory(scanner)
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in OUR_LOGGERS}
    root.setLevel(min(root.level, logging.INFO))
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    factory.install()
    yield scanner
    factory.uninstall()
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)
    leaks = scanner.find(redact.registered())
    if leaks:
        shown = "\n".join(f"  {leak}" for leak in leaks[:20])
        pytest.fail(f"{len(leaks)} secret value(s) appeared in resilience logs or output:\n"
                    f"{shown}", pytrace=False)


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
    report = outcome.get_result()
    if report.nodeid.startswith(PREFIX):
        for name, content in report.sections:
            scanner.add(f"{report.nodeid} ({name})", content)
        if report.failed:
            scanner.add(f"{report.nodeid} (failure report)", report.longreprtext)
        report.sections = [(name, redact(content)) for name, content in report.sections]
        if report.failed and redact(report.longreprtext) != report.longreprtext:
            report.longrepr = redact(report.longreprtext)
