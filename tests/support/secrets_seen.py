"""Find secret values in what the tests logged and printed.

The secrets are everything `broker.logs.redact` knows: values registered explicitly, every
token and client secret `Vault` wrote or read, and the secret settings. The texts are every log
record's message and traceback, taken when the record is *created* (before any filter could
redact it, so a leak is seen even where redaction would have hidden it in production), plus
each test's captured stdout, stderr and failure report.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Leak:
    where: str  # the test id and what it was (log record, captured stdout, ...)
    preview: str  # the secret's first characters and length, never the secret itself

    def __str__(self) -> str:
        return f"{self.where}: {self.preview}"


def preview(secret: str) -> str:
    return f"{secret[:4]}… ({len(secret)} characters)"


@dataclass
class LeakScanner:
    """Collects texts as (where, text) and finds any of a set of secrets in them."""

    prefix: str = ""  # only texts produced while a test under this path runs are kept
    # (where, text) -> None: an ordered set, since each phase's report repeats earlier sections
    texts: dict[tuple[str, str], None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current_test(self) -> str | None:
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        return test.rsplit(" ", 1)[0] if test.startswith(self.prefix) and test else None

    def add(self, where: str, text: str | None) -> None:
        if text:
            with self._lock:
                self.texts[(where, text)] = None

    def add_record(self, record: logging.LogRecord) -> None:
        test = self.current_test()
        if test is None:
            return
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg} {record.args}"
        parts = [message]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            parts.append(record.stack_info)
        self.add(f"{test} (log {record.name})", "\n".join(parts))

    def find(self, secrets: Iterable[str]) -> list[Leak]:
        secrets = [s for s in secrets if s]
        with self._lock:
            texts = list(self.texts)
        return [Leak(where, preview(secret)) for where, text in texts for secret in secrets
                if secret in text]


class RecordFactory:
    """Wraps logging's record factory so every record created is shown to a scanner."""

    def __init__(self, scanner: LeakScanner) -> None:
        self.scanner = scanner
        self.previous = logging.getLogRecordFactory()

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        self.scanner.add_record(record)
        return record

    def install(self) -> None:
        logging.setLogRecordFactory(self)

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() is self:
            logging.setLogRecordFactory(self.previous)


# our own code logs at DEBUG during a scanned session; third-party libraries from INFO
OUR_LOGGERS = ("broker", "consent_web", "function_app")


def scanned_session(scanner: LeakScanner, suite: str) -> Iterator[LeakScanner]:
    """The body of a session fixture: capture every record, then fail on any leak found."""
    import pytest

    from broker.logs import redact

    factory = RecordFactory(scanner)
    # the redactor keeps only the values a process used last; the scan needs every one
    seen: set[str] = set(redact.registered())
    redact.listeners.append(seen.add)
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
    redact.listeners.remove(seen.add)
    leaks = scanner.find(seen | redact.registered())
    if leaks:
        shown = "\n".join(f"  {leak}" for leak in leaks[:20])
        pytest.fail(f"{len(leaks)} secret value(s) appeared in {suite} logs or output:\n"
                    f"{shown}", pytrace=False)


def scan_report(scanner: LeakScanner, report) -> None:
    """From `pytest_runtest_makereport`: scan a test's captured output and failure report raw,
    then redact them, so the terminal and CI logs never repeat a secret."""
    from broker.logs import redact

    if not report.nodeid.startswith(scanner.prefix):
        return
    for name, content in report.sections:
        scanner.add(f"{report.nodeid} ({name})", content)
    if report.failed:
        scanner.add(f"{report.nodeid} (failure report)", report.longreprtext)
    report.sections = [(name, redact(content)) for name, content in report.sections]
    if report.failed and redact(report.longreprtext) != report.longreprtext:
        report.longrepr = redact(report.longreprtext)
