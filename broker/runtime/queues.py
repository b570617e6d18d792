"""Queues as the Functions host runs them, in one process: the local worker's half of `rotations`.

`MemoryQueue` is Azure's queue semantics (invisibility, pop receipts, dequeue counts) without a
storage account, the embedded default when `AzureWebJobsStorage` is not set. `QueueProcessor` is
the retry rule as the host applies it (Storage Queues extension,
`QueueProcessor.BeginProcessingMessageAsync` / `CompleteProcessingMessageAsync` in
Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/
Shared/Queues/QueueProcessor.cs):

- a message received with `DequeueCount > maxDequeueCount` (its last try crashed the process)
  goes to `<queue>-poison` without running;
- success deletes the message;
- failure with `DequeueCount >= maxDequeueCount` copies the body to `<queue>-poison` (created if
  missing) and deletes the original; a failure below that releases it: `UpdateMessage` with
  host.json's `visibilityTimeout`, and the queue counts the next receive as one more dequeue.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from broker.logs import get_logger
from broker.queue import (
    MAX_DEQUEUE_COUNT,
    POISON_QUEUE_NAME,
    QUEUE_NAME,
    RECEIVE_VISIBILITY_S,
    VISIBILITY_TIMEOUT_S,
    Queues,
    Received,
    RotationQueue,
    clamp_delay,
    storage_queue,
    storage_queues,
    uses_storage_queues,
)

log = get_logger(__name__)


# -- in process -------------------------------------------------------------------------------


@dataclass
class _Entry:
    id: str
    body: str
    inserted: float
    visible_at: float
    dequeue_count: int = 0
    pop_receipt: str = ""


class MemoryQueue:
    """The embedded default: Azure's queue semantics (invisibility, pop receipts, dequeue counts)
    in one process, so the local worker retries and poisons exactly as the host would.

    Entries wait in a heap ordered by when they become visible, so a receive looks only at the
    few it hands out (log n each), not at every entry: the due-scan may enqueue a whole night.
    A heap item whose entry was deleted or made invisible again since is stale and skipped.
    """

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()

    def _push(self, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.visible_at, entry.id))

    def _visible(self, now: float, limit: int, *, take: bool) -> list[_Entry]:
        """Up to `limit` visible entries, earliest first (with the lock held); `take` pops them
        off the heap (the caller pushes them back with their new visibility)."""
        found: list[_Entry] = []
        skipped: list[tuple[float, str]] = []
        while self._heap and len(found) < limit and self._heap[0][0] <= now:
            item = heapq.heappop(self._heap)
            entry = self._entries.get(item[1])
            if entry is None or entry.visible_at != item[0]:
                continue  # deleted, or re-scheduled: a newer heap item stands for it
            found.append(entry)
            if not take:
                skipped.append(item)
        for item in skipped:
            heapq.heappush(self._heap, item)
        return found

    def send(self, body: str, *, delay_s: float = 0.0) -> None:
        now = self._clock()
        entry = _Entry(f"{next(self._order):08d}-{uuid.uuid4().hex[:8]}", body, now,
                       now + clamp_delay(delay_s))
        with self._cond:
            self._entries[entry.id] = entry
            self._push(entry)
            self._cond.notify_all()

    def receive(self, max_messages: int = 1, *,
                visibility_s: float = RECEIVE_VISIBILITY_S) -> list[Received]:
        now = self._clock()
        out: list[Received] = []
        with self._cond:
            for entry in self._visible(now, max(1, min(32, max_messages)), take=True):
                entry.dequeue_count += 1
                entry.pop_receipt = uuid.uuid4().hex
                entry.visible_at = now + visibility_s
                self._push(entry)
                out.append(Received(entry.id, entry.pop_receipt, entry.body,
                                    entry.dequeue_count))
        return out

    def _owned(self, message: Received) -> _Entry | None:
        entry = self._entries.get(message.id)
        return entry if entry is not None and entry.pop_receipt == message.pop_receipt else None

    def delete(self, message: Received) -> None:
        with self._cond:
            if self._owned(message) is not None:  # a stale pop receipt: someone else owns it
                del self._entries[message.id]

    def release(self, message: Received, *, delay_s: float) -> None:
        with self._cond:
            entry = self._owned(message)
            if entry is not None:
                entry.visible_at = self._clock() + clamp_delay(delay_s)
                entry.pop_receipt = uuid.uuid4().hex
                self._push(entry)
                self._cond.notify_all()

    def peek(self, max_messages: int = 32) -> list[str]:
        with self._cond:
            return [e.body for e in self._visible(self._clock(), max_messages, take=False)]

    def count(self) -> int:
        with self._cond:
            return len(self._entries)

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()
            self._heap.clear()

    def wait(self, timeout: float) -> None:
        """Sleep until a message may be visible (or `timeout`), waking early on a send."""
        with self._cond:
            while self._heap and self._heap[0][1] not in self._entries:
                heapq.heappop(self._heap)  # deleted entries at the top say nothing
            if not self._heap:
                self._cond.wait(timeout)
                return
            wait = self._heap[0][0] - self._clock()
            if wait > 0:
                self._cond.wait(min(timeout, wait))


def queues_from_settings(settings) -> Queues:
    """Azure Storage queues when `AzureWebJobsStorage` is configured, else in-process ones."""
    if uses_storage_queues(settings):
        return storage_queues(settings)
    return Queues(MemoryQueue(QUEUE_NAME), MemoryQueue(POISON_QUEUE_NAME))


def poison_queues(settings, poison: RotationQueue) -> Queues:
    """The poison queue is itself a trigger queue, with its own `-poison` (as in the host)."""
    name = f"{poison.name}-poison"
    sink = storage_queue(settings, name) if uses_storage_queues(settings) else MemoryQueue(name)
    return Queues(poison, sink)


# -- the host's retry rule --------------------------------------------------------------------

Disposition = Literal["completed", "released", "poisoned"]


class QueueProcessor:
    """Runs a handler on one received message and settles it as the Functions host does."""

    def __init__(self, queues: Queues, *, max_dequeue_count: int = MAX_DEQUEUE_COUNT,
                 visibility_timeout_s: float = VISIBILITY_TIMEOUT_S) -> None:
        self.queues = queues
        self.max_dequeue_count = max_dequeue_count
        self.visibility_timeout_s = visibility_timeout_s

    def process(self, message: Received, handler: Callable[[Received], object]) -> Disposition:
        if message.dequeue_count > self.max_dequeue_count:
            self._poison(message)
            return "poisoned"
        try:
            handler(message)
        except Exception as exc:
            if message.dequeue_count >= self.max_dequeue_count:
                log.warning("message %s failed on try %d (%s); moving it to %s", message.id,
                            message.dequeue_count, type(exc).__name__, self.queues.poison.name)
                self._poison(message)
                return "poisoned"
            log.info("message %s failed on try %d of %d (%s); retrying in %g s", message.id,
                     message.dequeue_count, self.max_dequeue_count, type(exc).__name__,
                     self.visibility_timeout_s)
            self.queues.rotations.release(message, delay_s=self.visibility_timeout_s)
            return "released"
        self.queues.rotations.delete(message)
        return "completed"

    def _poison(self, message: Received) -> None:
        self.queues.poison.send(message.body)
        self.queues.rotations.delete(message)
