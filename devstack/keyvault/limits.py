"""Key Vault's per-vault service limits, and the counters the benchmarks read.

With `--vault-throttle`, a vault admits 300 secret creates and 4,000 other transactions in any
10-second sliding window, like Azure; past that it answers 429 with `Retry-After` (the whole
seconds until the oldest admitted transaction leaves the window). Rejected requests do not count
against the limit, as Azure documents. The windows run on real time, not the emulated clock:
they pace clients, they are not dates.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 10.0
CREATE_LIMIT = 300
OTHER_LIMIT = 4000


class SlidingWindow:
    """Admits at most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: deque[float] = deque()

    def admit(self) -> int | None:
        """Record an event and return None, or return the seconds to wait (>= 1) instead."""
        now = self._clock()
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()
        if len(self._events) >= self.limit:
            return max(1, math.ceil(self._events[0] + self.window - now))
        self._events.append(now)
        return None


class Limits:
    """The vault's throttle (when enabled) and its request counters, safe across threads."""

    def __init__(self, enabled: bool, clock: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._windows = {
                "create": SlidingWindow(CREATE_LIMIT, clock=self._clock),
                "other": SlidingWindow(OTHER_LIMIT, clock=self._clock),
            }
            self._counts = {"requests": 0, "throttled": 0, "creates": 0,
                            "create_attempts": 0, "creates_throttled": 0,
                            "peak_create_attempts_10s": 0}
            self._attempts: deque[float] = deque()

    def admit(self, kind: str) -> int | None:
        """None if a transaction of `kind` ("create" or "other") may run, else Retry-After.

        Every create attempt, admitted or not, is also counted in a sliding window of its own:
        `peak_create_attempts_10s` is the most that arrived in any 10 s, which is what clients
        sharing a vault must keep at or below the limit (the benchmarks read it).
        """
        with self._lock:
            retry_after = self._windows[kind].admit() if self.enabled else None
            if kind == "create":
                self._count_attempt()
                if retry_after is None:
                    self._counts["creates"] += 1
                else:
                    self._counts["creates_throttled"] += 1
            return retry_after

    def _count_attempt(self) -> None:
        now = self._clock()
        self._attempts.append(now)
        while self._attempts and self._attempts[0] <= now - WINDOW_SECONDS:
            self._attempts.popleft()
        self._counts["create_attempts"] += 1
        self._counts["peak_create_attempts_10s"] = max(
            self._counts["peak_create_attempts_10s"], len(self._attempts))

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
