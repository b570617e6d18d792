"""The `rotations` queue: one message per credential to rotate, and what happens when one fails.

In Azure the timer enqueues and the Functions host drains the queue; locally the worker does
both. Both sides must agree on three things, kept here: the message (ids and a version, never a
token), the encoding (base64, as host.json's `messageEncoding` tells the host to expect), and the
retry rule. `QueueProcessor` is that rule as the host applies it (Storage Queues extension,
`QueueProcessor.BeginProcessingMessageAsync` / `CompleteProcessingMessageAsync` in
Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/
Shared/Queues/QueueProcessor.cs):

- a message received with `DequeueCount > maxDequeueCount` (its last try crashed the process)
  goes to `<queue>-poison` without running;
- success deletes the message;
- failure with `DequeueCount >= maxDequeueCount` copies the body to `<queue>-poison` (created if
  missing) and deletes the original; a failure below that releases it: `UpdateMessage` with
  host.json's `visibilityTimeout`, and the queue counts the next receive as one more dequeue.

The listener receives with a 10-minute invisibility (`QueueListener._visibilityTimeout`) that
it renews while the function runs; `RECEIVE_VISIBILITY_S` mirrors it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from broker.errors import BrokerError, TransientFailure
from broker.logs import get_logger

log = get_logger(__name__)

QUEUE_NAME = "rotations"
POISON_QUEUE_NAME = f"{QUEUE_NAME}-poison"  # the host's naming: "<queue>-poison"
MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount
VISIBILITY_TIMEOUT_S = 30.0  # host.json extensions.queues.visibilityTimeout (retry delay)
RECEIVE_VISIBILITY_S = 600.0  # the host listener's invisibility while a message is processed
MAX_DELAY_S = 7 * 24 * 3600 - 60  # Azure: visibility <= 7 days and below the 7-day default TTL
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # the credential id (ARCHITECTURE.md)
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")  # Key Vault versions are 32 hex characters


class InvalidMessage(BrokerError):
    """A queue message that is not one of ours; it is dropped, never retried."""

    default_message = "The queue message is not a rotation request."
    hint = "Only the broker should write to the rotations queue."


JOBS = ("rotate", "validate")


@dataclass(frozen=True)
class RotationMessage:
    """Rotate (or, with job="validate", validate) `credential_id` if its latest version is still
    `version` (None: one obtained before `enqueued_at`)."""

    credential_id: str
    version: str | None
    enqueued_at: datetime
    job: str = "rotate"

    def dumps(self) -> str:
        body = {
            "credential_id": self.credential_id,
            "version": self.version,
            "enqueued_at": self.enqueued_at.astimezone(UTC).isoformat(),
        }
        if self.job != "rotate":  # rotation messages stay as they were (older workers read them)
            body["job"] = self.job
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def loads(cls, body: str | bytes) -> RotationMessage:
        try:
            data = json.loads(body)
            credential_id, version = data["credential_id"], data.get("version")
            enqueued_at = datetime.fromisoformat(data["enqueued_at"])
            job = data.get("job", "rotate")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidMessage() from exc
        valid_id = isinstance(credential_id, str) and _SLUG.fullmatch(credential_id)
        valid_version = version is None or (isinstance(version, str)
                                            and _VERSION.fullmatch(version))
        if not valid_id or not valid_version or job not in JOBS:
            raise InvalidMessage()
        if enqueued_at.tzinfo is None:
            enqueued_at = enqueued_at.replace(tzinfo=UTC)
        return cls(credential_id, version, enqueued_at, job)


@dataclass(frozen=True)
class Received:
    """One delivery of a message: the same message comes back with a higher dequeue count."""

    id: str
    pop_receipt: str
    body: str
    dequeue_count: int
    inserted_on: datetime | None = None
    expires_on: datetime | None = None
    next_visible_on: datetime | None = None


class RotationQueue(Protocol):
    name: str

    def send(self, body: str, *, delay_s: float = 0.0) -> None: ...

    def receive(self, max_messages: int = 1, *,
                visibility_s: float = RECEIVE_VISIBILITY_S) -> list[Received]: ...

    def delete(self, message: Received) -> None: ...

    def release(self, message: Received, *, delay_s: float) -> None: ...

    def peek(self, max_messages: int = 32) -> list[str]: ...

    def count(self) -> int: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float) -> None: ...


@dataclass(frozen=True)
class Queues:
    rotations: RotationQueue
    poison: RotationQueue


def _delay(delay_s: float) -> int:
    return int(min(max(0.0, delay_s), MAX_DELAY_S))


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
                       now + _delay(delay_s))
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
                entry.visible_at = self._clock() + _delay(delay_s)
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


# -- Azure Storage ----------------------------------------------------------------------------


class StorageQueue:
    """An Azure Storage queue (or Azurite) through `azure-storage-queue`, base64 on the wire as
    host.json's `messageEncoding: base64` makes the Functions host expect."""

    def __init__(self, client) -> None:
        self._client = client
        self.name = client.queue_name
        self._created = False
        self._lock = threading.Lock()

    def _call(self, what: str, operation: Callable):
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return operation()
        except (ResourceNotFoundError, ResourceExistsError):
            raise  # the callers decide what a missing or existing queue means
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientFailure(f"Queue {self.name}: cannot {what} ({type(exc).__name__}).") \
                from exc
        except ClientAuthenticationError as exc:
            raise BrokerError(
                f"Queue {self.name}: access denied while trying to {what}.",
                hint="Give the app's identity 'Storage Queue Data Contributor' on the storage "
                     "account, or check the AzureWebJobsStorage connection string.",
            ) from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 429 or status >= 500:
                raise TransientFailure(f"Queue {self.name}: cannot {what} (HTTP {status}).") \
                    from exc
            if status == 403:
                raise BrokerError(
                    f"Queue {self.name}: access denied while trying to {what}.",
                    hint="Give the app's identity 'Storage Queue Data Contributor' on the "
                         "storage account.",
                ) from exc
            raise BrokerError(f"Queue {self.name}: cannot {what} (HTTP {status}).") from exc

    def ensure(self) -> None:
        """Create the queue once per process if it is missing (the host does the same)."""
        if self._created:
            return
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self._call("create the queue", self._client.create_queue)
                self._created = True

    def send(self, body: str, *, delay_s: float = 0.0) -> None:
        self.ensure()
        self._call("send", lambda: self._client.send_message(
            body, visibility_timeout=_delay(delay_s)))

    def receive(self, max_messages: int = 1, *,
                visibility_s: float = RECEIVE_VISIBILITY_S) -> list[Received]:
        from azure.core.exceptions import ResourceNotFoundError

        count = max(1, min(32, max_messages))
        try:
            messages = self._call("receive", lambda: list(self._client.receive_messages(
                messages_per_page=count, max_messages=count,
                visibility_timeout=max(1, int(visibility_s)))))
        except ResourceNotFoundError:
            self.ensure()
            return []
        return [Received(m.id, m.pop_receipt, m.content, m.dequeue_count, m.inserted_on,
                         m.expires_on, m.next_visible_on) for m in messages]

    def delete(self, message: Received) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            self._call("delete", lambda: self._client.delete_message(
                message.id, message.pop_receipt))
        except ResourceNotFoundError:
            pass  # already gone: deleted by a previous try or expired
        except BrokerError as exc:
            if not _pop_receipt_mismatch(exc.__cause__, HttpResponseError):
                raise

    def release(self, message: Received, *, delay_s: float) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            self._call("release", lambda: self._client.update_message(
                message.id, message.pop_receipt, visibility_timeout=_delay(delay_s)))
        except ResourceNotFoundError:
            pass
        except BrokerError as exc:
            if not _pop_receipt_mismatch(exc.__cause__, HttpResponseError):
                raise

    def peek(self, max_messages: int = 32) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            messages = self._call("peek", lambda: self._client.peek_messages(
                max_messages=max(1, min(32, max_messages))))
        except ResourceNotFoundError:
            return []
        return [m.content for m in messages]

    def count(self) -> int:
        """Approximate, as Azure reports it (visible and invisible messages)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self._call("count", self._client.get_queue_properties)
        except ResourceNotFoundError:
            return 0
        return int(props.approximate_message_count or 0)

    def clear(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._call("clear", self._client.clear_messages)

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)


def _pop_receipt_mismatch(cause, http_error_type) -> bool:
    """The host's `IsBadRequestPopReceiptMismatch`: someone else owns the message now."""
    return (isinstance(cause, http_error_type) and cause.status_code == 400
            and getattr(cause, "error_code", None) == "PopReceiptMismatch")


def storage_queue(settings, name: str) -> StorageQueue:
    """A StorageQueue on the account of `AzureWebJobsStorage` (connection string or identity)."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    codecs = {"message_encode_policy": TextBase64EncodePolicy(),
              "message_decode_policy": TextBase64DecodePolicy()}
    if settings.storage:
        client = QueueClient.from_connection_string(settings.storage, name, **codecs)
    else:
        account_url = settings.storage_queue_url or (
            f"https://{settings.storage_account}.queue.core.windows.net")
        from azure.identity import DefaultAzureCredential

        client = QueueClient(account_url, name, credential=DefaultAzureCredential(), **codecs)
    return StorageQueue(client)


def uses_storage_queues(settings) -> bool:
    return bool(settings.storage or settings.storage_account or settings.storage_queue_url)


def queues_from_settings(settings) -> Queues:
    """Azure Storage queues when `AzureWebJobsStorage` is configured, else in-process ones."""
    if uses_storage_queues(settings):
        return Queues(storage_queue(settings, QUEUE_NAME),
                      storage_queue(settings, POISON_QUEUE_NAME))
    return Queues(MemoryQueue(QUEUE_NAME), MemoryQueue(POISON_QUEUE_NAME))


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
