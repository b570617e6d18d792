"""The `rotations` queue: one message per credential to rotate or validate, on Azure Storage.

In Azure the timer enqueues and the Functions host drains the queue; locally the worker
(`broker.runtime`) does both. Both sides must agree on three things, kept here: the message (ids
and a version, never a token), the encoding (base64, as host.json's `messageEncoding` tells the
host to expect), and the host.json numbers of the retry rule (`MAX_DEQUEUE_COUNT`,
`VISIBILITY_TIMEOUT_S`). The rule itself, as the host applies it, is
`broker.runtime.queues.QueueProcessor`: only the local stand-in for the host needs it.

The listener receives with a 10-minute invisibility (`QueueListener._visibilityTimeout`) that
it renews while the function runs; `RECEIVE_VISIBILITY_S` mirrors it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from broker.azure_errors import from_azure
from broker.azure_errors import queue as queue_target
from broker.errors import BrokerError, InvalidMessage, SettingsError

QUEUE_NAME = "rotations"
POISON_QUEUE_NAME = f"{QUEUE_NAME}-poison"  # the host's naming: "<queue>-poison"
MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount
VISIBILITY_TIMEOUT_S = 30.0  # host.json extensions.queues.visibilityTimeout (retry delay)
RECEIVE_VISIBILITY_S = 600.0  # the host listener's invisibility while a message is processed
MAX_DELAY_S = 7 * 24 * 3600 - 60  # Azure: visibility <= 7 days and below the 7-day default TTL
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # the credential id (ARCHITECTURE.md)
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")  # Key Vault versions are 32 hex characters


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


def clamp_delay(delay_s: float) -> int:
    """Seconds of invisibility as Azure accepts them: 0 to just under the 7-day maximum."""
    return int(min(max(0.0, delay_s), MAX_DELAY_S))


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
        """Run one SDK call; a missing or existing queue is the caller's to interpret, every
        other failure is mapped by `broker.azure_errors`."""
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

        try:
            return operation()
        except (ResourceNotFoundError, ResourceExistsError):
            raise  # the callers decide what a missing or existing queue means
        except AzureError as exc:
            raise from_azure(exc, queue_target(self.name), what) from exc

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
            body, visibility_timeout=clamp_delay(delay_s)))

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
                message.id, message.pop_receipt, visibility_timeout=clamp_delay(delay_s)))
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


def storage_queues(settings) -> Queues:
    """The rotations queue and its poison queue on the account of `AzureWebJobsStorage`.

    The Functions host drains these, so without storage there is nothing to enqueue on: a
    SettingsError names the setting instead of a queue nobody reads.
    """
    if not uses_storage_queues(settings):
        raise SettingsError("AzureWebJobsStorage", "AzureWebJobsStorage is not set: the "
                            "rotations queue lives on that storage account.")
    return Queues(storage_queue(settings, QUEUE_NAME), storage_queue(settings, POISON_QUEUE_NAME))
