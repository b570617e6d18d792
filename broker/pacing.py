"""A token bucket that keeps bulk rotation below Key Vault's secret-create limit.

Key Vault allows 300 secret creates per 10 s per vault and answers 429 beyond that; each
rotation creates one version, so every rotation worker takes one token from a shared bucket
before it starts. Pacing ourselves is cheaper than being throttled and retrying.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per `per` seconds, with bursts of up to `rate`; safe across threads."""

    def __init__(self, rate: int, per: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("rate must be at least 1 and per positive")
        self.capacity = float(rate)
        self.per_second = rate / per
        self._tokens = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now

    def take(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1 - 1e-9:  # float drift must not leave us a hair short
                    self._tokens -= 1
                    return waited
                wait = (1 - self._tokens) / self.per_second
            self._sleep(wait)
            waited += wait
