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

import logging

import pytest

from broker.logs import redact
from tests.support.secrets_seen import LeakScanner, RecordFactory

PREFIX = "tests/integration/"
# our own code logs at DEBUG in the scan; third-party libraries from INFO
OUR_LOGGERS = ("broker", "consent_web", "function_app")

scanner = LeakScanner(prefix=PREFIX)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs_or_output():
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
        pytest.fail(f"{len(leaks)} secret value(s) appeared in logs or test output:\n{shown}",
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.nodeid.startswith(PREFIX):
        for name, content in report.sections:
            scanner.add(f"{report.nodeid} ({name})", content)
        if report.failed:
            scanner.add(f"{report.nodeid} (failure report)", report.longreprtext)
        # scanned raw above; what the terminal and CI logs show must not repeat a secret
        report.sections = [(name, redact(content)) for name, content in report.sections]
        if report.failed and redact(report.longreprtext) != report.longreprtext:
            report.longrepr = redact(report.longreprtext)
