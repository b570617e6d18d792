"""Structured logging with the credential and correlation ids on every record, and redaction.

Secrets must never reach a log line, so besides not logging them we redact as a last line of
defence: `redact.register(value)` remembers a value (the vault registers every token and client
secret it writes or reads), and the filter that `configure()` installs on the root handlers
replaces registered values and anything shaped like a JWT or an Entra refresh token.
"""

from __future__ import annotations

import contextlib
import contextvars
import json as jsonlib
import logging
import re
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None)
credential_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "credential_id", default=None)

MASK = "[redacted]"
MIN_SECRET_LENGTH = 8  # shorter values would mask ordinary words; no real secret is that short
# a JWT (header.payload.signature of base64url JSON) and Entra's refresh tokens ("0.A…", "1.A…")
PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"\b[01]\.A[A-Za-z0-9_.*-]{40,}"),
)


class Redactor:
    """`redact(text)` masks secrets; `redact.register(value)` adds a value to mask everywhere.

    Bounded: a worker that rotates a fleet sees two tokens per credential per night, so it keeps
    the `capacity` values registered (or seen) last, evicting the least recently used; a token
    it has not touched for that long is no longer in any of its variables, and the token shapes
    in PATTERNS still catch it. Checking a line costs O(length of the line), not O(values):
    values are indexed by their first MIN_SECRET_LENGTH characters, and only positions whose
    next characters start a registered value are compared in full. `listeners` (the tests' leak
    scanner) hear every value registered, to remember more than a process should.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._values: OrderedDict[str, None] = OrderedDict()
        self._prefixes: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str], None]] = []

    def register(self, value: str | None) -> None:
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            self._prefixes.setdefault(value[:MIN_SECRET_LENGTH], set()).add(value)
            while len(self._values) > self.capacity:
                old, _ = self._values.popitem(last=False)
                group = self._prefixes.get(old[:MIN_SECRET_LENGTH])
                if group is not None:
                    group.discard(old)
                    if not group:
                        del self._prefixes[old[:MIN_SECRET_LENGTH]]
        for listener in list(self.listeners):
            listener(value)

    def registered(self) -> frozenset[str]:
        """The values this process masks now (at most `capacity`, the most recent)."""
        with self._lock:
            return frozenset(self._values)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        found = self._find(text)
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, MASK)
        for pattern in PATTERNS:
            text = pattern.sub(MASK, text)
        return text

    def _find(self, text: str) -> set[str]:
        prefixes = self._prefixes
        if not prefixes or len(text) < MIN_SECRET_LENGTH:
            return set()
        found: set[str] = set()
        with self._lock:
            for start in range(len(text) - MIN_SECRET_LENGTH + 1):
                group = prefixes.get(text[start:start + MIN_SECRET_LENGTH])
                if group:
                    found.update(v for v in group if text.startswith(v, start))
        return found


redact = Redactor()


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


@contextlib.contextmanager
def bound(*, credential: str | None = None, correlation: str | None = None) -> Iterator[str]:
    """Put ids on every record logged inside; yields the correlation id (a new one if none)."""
    cid = correlation or correlation_id.get() or new_correlation_id()
    tokens = [correlation_id.set(cid)]
    if credential is not None:
        tokens.append(credential_id.set(credential))
    try:
        yield cid
    finally:
        for token in reversed(tokens):
            token.var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context ids onto the record (where formatters and JSON output find them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "credential_id", None) is None:
            record.credential_id = credential_id.get()
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id.get()
        return True


class RedactingFilter(logging.Filter):
    """Renders message, exception and stack with secrets masked, before the handler formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_broker_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._broker_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "credential_id": getattr(record, "credential_id", None),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return jsonlib.dumps({k: v for k, v in entry.items() if v is not None})


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"
# the SDKs log every request and every credential probe at INFO; one line per job is ours
QUIET_LOGGERS = ("azure.identity", "azure.core.pipeline.policies.http_logging_policy")


class TextFormatter(logging.Formatter):
    """One line per record, with ` [credential=… correlation=…]` only for ids that are set."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{name}={value}" for name, value in (
            ("credential", getattr(record, "credential_id", None)),
            ("correlation", getattr(record, "correlation_id", None))) if value]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def install_filters(handler: logging.Handler) -> logging.Handler:
    """Give a handler the context and redacting filters (once)."""
    for cls in (ContextFilter, RedactingFilter):
        if not any(isinstance(f, cls) for f in handler.filters):
            handler.addFilter(cls())
    return handler


def configure(level: str | int = "INFO", json: bool = False) -> None:
    """Filter every root handler (the Functions host installs its own); add a stderr one if none.

    The formatter is ours only on the handler we add; a host's handler keeps its own format.
    """
    root = logging.getLogger()
    root.setLevel(level)
    ours = [h for h in root.handlers if getattr(h, "_broker_handler", False)]
    if not root.handlers or ours:
        handler = ours[0] if ours else logging.StreamHandler(sys.stderr)
        handler._broker_handler = True
        handler.setFormatter(JsonFormatter() if json else TextFormatter())
        if not ours:
            root.addHandler(handler)
    for handler in root.handlers:
        install_filters(handler)
    if root.getEffectiveLevel() > logging.DEBUG:
        quiet_sdks()


def quiet_sdks() -> None:
    """Keep the SDKs' per-request and per-probe INFO lines out of a job's log."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
