"""Pacing that keeps every writer of one vault below Key Vault's secret-create limit.

Key Vault allows 300 secret creates per 10 s per vault, counted over a sliding window, and
answers 429 beyond that. A token bucket is not enough: a full bucket's burst plus its refill can
put nearly twice the limit into one window. So every secret create first takes a permit from a
window limiter of the same shape as the vault's; pacing ourselves is cheaper than being
throttled and retrying.

The limit is the vault's, not a process's: with K Function instances each pacing itself to the
limit, K times the limit reaches the vault (3 instances put 446 creates into one window, 45 % of
them refused). So in Azure the window lives in the storage account every instance already
shares (`SharedWindowLimiter`: one small blob, updated with ETag optimistic concurrency, that
hands out send times so that no 10 s window holds more than the limit, whoever sends). One
process alone (the CLI, `broker worker` without storage) uses the in-process `WindowLimiter`.
Both also slow down when the vault answers 429 anyway (another client of the vault): every
permit waits out the Retry-After first.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from broker.logs import get_logger

log = get_logger(__name__)

PACING_BLOB_PREFIX = "pacing/"  # in the leases container; no credential id contains a slash


class Pacer(Protocol):
    def take(self) -> float:
        """Wait for a permit to create one secret now; returns the seconds waited."""

    def throttled(self, retry_after: float | None) -> None:
        """The vault answered 429: no permit before `retry_after` seconds from now."""


class WindowLimiter:
    """At most `limit` permits in any `per` seconds; safe across threads, one process."""

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
        self._paused_until = 0.0

    def take(self) -> float:
        """Take one permit, sleeping until the window has room; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._taken and self._taken[0] <= now - self.per:
                    self._taken.popleft()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif len(self._taken) < self.limit:
                    self._taken.append(now)
                    return waited
                else:
                    wait = self._taken[0] + self.per - now
            self._sleep(wait)
            waited += wait

    def throttled(self, retry_after: float | None) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + (retry_after or 1.0))


class SharedWindowLimiter:
    """At most `limit` permits in any `per` seconds across every process sharing one blob.

    The blob holds the send times of the last `limit` permits handed out (and a pause after a
    429). A process claims a few permits at a time: it reads the blob, computes the earliest
    send times that keep every window of `per` seconds at or below `limit`, and writes them back
    only if the blob is unchanged (If-Match on its ETag); on a conflict it reads again. Times
    are wall-clock (Azure instances keep NTP time). Claims are small and only for the next
    `horizon` seconds, so permits are not hoarded: a process claims as many as it has threads
    waiting, up to `block`.

    A permit is a send time, but the request leaves a little later (a thread wakes, the lock is
    free); so a permit used more than `LATE` after its time is dropped, and each new time keeps
    `slack` (> LATE) more than the window from the one `limit` permits before it. Then no window
    of actual sends holds more than `limit`, at the cost of `slack` / `per` of the rate (3 %
    for 0.3 s in 10 s). New times start after the claim's own write is expected to be done (a
    smoothed measure of the blob's round trip), so a slow storage account delays permits
    rather than wasting them.
    """

    LATE = 0.2

    def __init__(self, container: Any, blob_name: str, limit: int, per: float = 10.0, *,
                 block: int = 8, horizon: float = 2.0, slack: float = 0.3,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or per <= 0:
            raise ValueError("limit must be at least 1 and per positive")
        self.container = container
        self.blob = container.get_blob_client(blob_name)
        self.limit, self.per, self.block, self.horizon = limit, per, block, horizon
        self.slack = slack
        self._clock, self._sleep = clock, sleep
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()
        self._waiting = 0
        self._pause_to_share = 0.0
        self._lead = 0.05  # how long a write of the blob takes, smoothed (seconds)
        self.claims = 0  # blob round trips that handed out permits (for the benchmarks)
        self.conflicts = 0  # claims that lost the ETag race and read again

    def take(self) -> float:
        with self._lock:
            self._waiting += 1
        try:
            with self._lock:
                while True:
                    now = self._clock()
                    while self._slots and self._slots[0] < now - self.LATE:
                        self._slots.popleft()  # too late to be counted where it was
                    if self._slots:
                        slot = self._slots.popleft()
                        break
                    self._slots.extend(self._claim(max(1, min(self.block, self._waiting))))
            wait = max(0.0, slot - self._clock())
            if wait:
                self._sleep(wait)
            if self._clock() - slot > self.LATE:  # overslept (a busy machine): too late now
                return wait + self.take()
            return wait
        finally:
            with self._lock:
                self._waiting -= 1

    def throttled(self, retry_after: float | None) -> None:
        """Drop this process's claimed permits and tell every process (on the next claim) to
        send nothing before the vault's Retry-After."""
        until = self._clock() + (retry_after or 1.0)
        with self._lock:
            self._slots.clear()
            self._pause_to_share = max(self._pause_to_share, until)

    # -- the shared state ----------------------------------------------------------------------

    def _claim(self, count: int) -> list[float]:
        """Reserve up to `count` send times in the blob (called with the lock held)."""
        while True:
            grants, paused, etag = self._read()
            now = self._clock()
            paused = max(paused, self._pause_to_share)
            # times start after our write is likely done: a permit dated before it would be
            # used late and dropped (on a slow storage round trip, all of them would be)
            start = max(now + self._lead, paused)
            grants = [t for t in grants if t > now - self.per - self.slack]
            out: list[float] = []
            while len(out) < count:
                t = start if len(grants) < self.limit else \
                    grants[-self.limit] + self.per + self.slack
                t = max(t, start, grants[-1] if grants else start)
                if t > now + self.horizon:
                    break
                grants.append(t)
                out.append(t)
            if not out:
                # the window is full until beyond the horizon: wait, then look again
                earliest = paused if paused > now + self.horizon else \
                    grants[-self.limit] + self.per + self.slack
                self._sleep(max(0.05, earliest - now - self.horizon))
                continue
            written = self._write(grants[-self.limit:], paused, etag)
            took = self._clock() - now
            self._lead = min(self.horizon / 2, 0.7 * self._lead + 0.3 * took)
            if written:
                self._pause_to_share = 0.0
                self.claims += 1
                return out
            self.conflicts += 1

    def _read(self) -> tuple[list[float], float, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = _storage(lambda: self.blob.download_blob())
        except ResourceNotFoundError:
            return [], 0.0, None
        etag = downloader.properties.etag
        try:
            data = json.loads(downloader.readall() or b"{}")
            grants = sorted(float(t) for t in data.get("grants", []))
            paused = float(data.get("paused_until", 0.0))
        except (ValueError, TypeError, AttributeError):
            log.warning("the pacing blob %s held no valid state; starting afresh",
                        self.blob.blob_name)
            grants, paused = [], 0.0
        return grants, paused, etag

    def _write(self, grants: list[float], paused: float, etag: str | None) -> bool:
        """Write the new state if nobody else did since our read; False if someone did."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        body = json.dumps({"grants": [round(t, 4) for t in grants],
                           "paused_until": round(paused, 4)}, separators=(",", ":"))
        if etag is None:
            conditions = {"match_condition": MatchConditions.IfMissing}
        else:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            _storage(lambda: self.blob.upload_blob(body, overwrite=True, **conditions))
        except (ResourceModifiedError, ResourceExistsError):
            return False
        except ResourceNotFoundError:  # the container itself is missing (first use)
            with contextlib.suppress(ResourceExistsError):
                _storage(self.container.create_container)
            return False
        return True


def _storage(call: Callable[[], Any]) -> Any:
    """One call on the pacing blob: the conditions the limiter handles (412, 409, a missing
    blob) stay azure-core's; every other failure is mapped by `broker.azure_errors`."""
    from azure.core import exceptions as az

    from broker.azure_errors import PACING, from_azure

    try:
        return call()
    except (az.ResourceNotFoundError, az.ResourceModifiedError, az.ResourceExistsError):
        raise
    except az.HttpResponseError as exc:
        if exc.status_code == 412:
            raise az.ResourceModifiedError(message=str(exc), response=exc.response) from exc
        if exc.status_code == 409:
            raise az.ResourceExistsError(message=str(exc), response=exc.response) from exc
        raise from_azure(exc, PACING, "pace the vault's writes") from exc
    except az.AzureError as exc:
        raise from_azure(exc, PACING, "pace the vault's writes") from exc
