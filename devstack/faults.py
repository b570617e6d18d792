"""Fault injection and network delay per service, switched by the admin endpoint and CLI flags."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

SERVICES = ("vault", "entra")
STATUSES = (429, 503)


@dataclass(frozen=True)
class Fault:
    status: int
    rate: float


class Faults:
    def __init__(self, latency_ms: dict[str, float] | None = None):
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._latency = dict(latency_ms or {})
        self._random = random.Random()
        self.injected: dict[str, int] = {s: 0 for s in SERVICES}

    def set(self, service: str, status: int, rate: float) -> None:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, STATUSES))}")
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            if rate == 0:
                self._faults.pop(service, None)
            else:
                self._faults[service] = Fault(status, rate)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {s: {"status": f.status, "rate": f.rate} for s, f in self._faults.items()}

    def should_fail(self, service: str) -> int | None:
        """The status to answer with instead of serving this request, or None."""
        with self._lock:
            fault = self._faults.get(service)
            if fault is None or self._random.random() >= fault.rate:
                return None
            self.injected[service] += 1
            return fault.status

    def delay(self, service: str) -> None:
        """Sleep the configured network latency for this service, if any."""
        ms = self._latency.get(service, 0)
        if ms > 0:
            time.sleep(ms / 1000)
