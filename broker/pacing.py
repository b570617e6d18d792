"""Pacing that keeps bulk rotation below Key Vault's secret-create limit.

Key Vault allows 300 secret creates per 10 s per vault, counted over a sliding window, and
answers 429 beyond that. A token bucket is not enough: a full bucket's burst plus its refill can
put nearly twice the limit into one window. So every version write first takes a permit from a
window limiter of the same shape as the vault's; pacing ourselves is cheaper than being
throttled and retrying.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class WindowLimiter:
    """At most `limit` permits in any `per` seconds; safe across threads."""

    def __init__(self, limit: int, per: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or per <= 0:
            raise ValueError("limit must be at least 1 and per positive")
        self.limit = limit
        self.per = per
        self._taken: deque[float] = deque()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one permit, sleeping until the window has room; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._taken and self._taken[0] <= now - self.per:
                    self._taken.popleft()
                if len(self._taken) < self.limit:
                    self._taken.append(now)
                    return waited
                wait = self._taken[0] + self.per - now
            self._sleep(wait)
            waited += wait
