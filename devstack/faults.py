"""Fault injection and network delay per service, switched by the admin endpoint and CLI flags.

Two kinds of fault:
- a **status** (429 or 503) answered instead of serving the request: nothing is stored;
- a **lost answer**: the write is served and committed, then the connection is cut before the
  answer is sent, as when a network drops the response. The client sees a connection error and
  cannot know whether its write happened; it did. Only writes (PUT, PATCH, POST, DELETE) that
  succeeded lose their answer; reads and refused writes are answered as usual.
"""

from __future__ import annotations

import errno
import random
import threading
import time
from dataclasses import dataclass

SERVICES = ("vault", "entra")
STATUSES = (429, 503)
LOST_ANSWER = "lost-answer"
WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})


@dataclass(frozen=True)
class Fault:
    status: int
    rate: float


class Faults:
    def __init__(self, latency_ms: dict[str, float] | None = None):
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._lost: dict[str, float] = {}
        self._latency = dict(latency_ms or {})
        self._random = random.Random()
        self.injected: dict[str, int] = {s: 0 for s in SERVICES}
        self.answers_lost: dict[str, int] = {s: 0 for s in SERVICES}

    def set(self, service: str, status: int | str, rate: float) -> None:
        """Switch a fault on (`rate` > 0) or off (0): a status, or `lost-answer`."""
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        if status != LOST_ANSWER and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, STATUSES))} "
                             f"or '{LOST_ANSWER}'")
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            if status == LOST_ANSWER:
                if rate == 0:
                    self._lost.pop(service, None)
                else:
                    self._lost[service] = rate
            elif rate == 0:
                self._faults.pop(service, None)
            else:
                self._faults[service] = Fault(int(status), rate)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._lost.clear()

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            view = {s: {"status": f.status, "rate": f.rate} for s, f in self._faults.items()}
            for service, rate in self._lost.items():
                view.setdefault(service, {})[LOST_ANSWER] = rate
            return view

    def should_fail(self, service: str) -> int | None:
        """The status to answer with instead of serving this request, or None."""
        with self._lock:
            fault = self._faults.get(service)
            if fault is None or self._random.random() >= fault.rate:
                return None
            self.injected[service] += 1
            return fault.status

    def lose_answer(self, service: str) -> bool:
        """Whether to cut the connection instead of sending this (committed) answer."""
        with self._lock:
            rate = self._lost.get(service)
            if rate is None or self._random.random() >= rate:
                return False
            self.answers_lost[service] += 1
            return True

    def delay(self, service: str) -> None:
        """Sleep the configured network latency for this service, if any."""
        ms = self._latency.get(service, 0)
        if ms > 0:
            time.sleep(ms / 1000)


def losing_answers(wsgi_app, faults: Faults, service: str):
    """Wrap a WSGI app so a successful write can lose its answer (see the module docstring).

    The app runs to completion first (its store commits); then, if the fault fires, the
    server is told the peer reset the connection, and it closes the socket without a byte of
    the answer. Cheroot treats ECONNRESET as a dropped connection and logs nothing.
    """

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD") not in WRITE_METHODS:
            return wsgi_app(environ, start_response)
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda _data: None  # the legacy write() callable; Flask never uses it

        body = wsgi_app(environ, capture)
        try:
            chunks = list(body)
        finally:
            if hasattr(body, "close"):
                body.close()
        if captured["status"][:1] == "2" and faults.lose_answer(service):
            raise ConnectionResetError(errno.ECONNRESET, "devstack: answer lost after commit")
        start_response(captured["status"], captured["headers"], captured["exc_info"])
        return chunks

    return app
