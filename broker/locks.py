"""One writer per credential: a lease held around every read-redeem-write of a token.

Two kinds, chosen by settings: Azure Blob leases (container `broker-leases`, one blob per
credential) whenever `AzureWebJobsStorage` is configured, because Function instances share no
disk; otherwise `fcntl` locks on files under `state_dir/locks` for a single machine. Both are
freed if the holder dies: the OS drops a dead process's file locks, and an unrenewed blob lease
expires after `lease_seconds`. Neither is re-entrant: hold a credential's lease once per operation.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.azure_errors import LEASES, azure_errors
from broker.credentials import is_credential_id
from broker.errors import Conflict, InvalidInput
from broker.logs import get_logger

if TYPE_CHECKING:
    from broker.settings import Settings

CONTAINER = "broker-leases"
log = get_logger(__name__)


class Held(Protocol):
    """What a writer may ask of the lease it holds (fencing: see `broker.fencing`)."""

    def usable(self) -> bool:
        """Still ours, confirmed recently enough to start a write that lands before it could
        expire; False once it is known lost or its last confirmation is too old."""

    def release(self) -> bool:
        """Release it now; False if it turned out to have been lost (someone else took it, so
        a write made while we thought we held it may have landed over theirs)."""

    def confirm(self) -> bool:
        """Renew it now; False if it was lost (the same check as `release`, keeping it)."""


class Leases(Protocol):
    def hold(self, credential_id: str, *, wait: float = 0.0) -> AbstractContextManager[Held]:
        """Hold the credential's lease for the block; Conflict if not acquired within `wait` s."""


def leases_from_settings(settings: Settings) -> Leases:
    if settings.uses_blob_leases:
        return BlobLeases.from_settings(settings)
    return FileLeases(settings.state_dir / "locks")


def _checked(credential_id: str) -> str:
    if not is_credential_id(credential_id):
        raise InvalidInput(errors={"id": "Not a credential id."})
    return credential_id


def acquire(try_once: Callable[[], bool], credential_id: str, wait: float, *,
            interval: float, max_interval: float = 2.0) -> None:
    """Call `try_once` until it succeeds, sleeping a jittered, growing interval between tries.

    Jitter keeps many waiters (one per Function instance) from retrying in lockstep.
    """
    deadline = time.monotonic() + max(wait, 0.0)
    while not try_once():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Conflict(f"{credential_id} is being changed by another operation.")
        time.sleep(min(remaining, interval * random.uniform(0.5, 1.5)))  # noqa: S311
        interval = min(interval * 1.5, max_interval)


class FileLeases:
    """`flock` on `<directory>/<id>.lock`: exclusive across processes and across threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @contextlib.contextmanager
    def hold(self, credential_id: str, *, wait: float = 0.0) -> Iterator[Held]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{_checked(credential_id)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            acquire(lambda: _try_flock(fd), credential_id, wait, interval=0.05, max_interval=0.5)
            yield _FileHeld()
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class _FileHeld:
    """A file lock never expires: a stalled holder keeps it, so it cannot be lost."""

    def usable(self) -> bool:
        return True

    def release(self) -> bool:
        return True  # the descriptor is closed when the block ends

    def confirm(self) -> bool:
        return True


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def blob_service(settings: Settings):
    """The blob service of `AzureWebJobsStorage` (connection string or managed identity), with
    short timeouts and few retries: a lease or a pacing claim that hangs holds up a write."""
    from azure.storage.blob import BlobServiceClient

    options = {"retry_total": 2, "connection_timeout": 10, "read_timeout": 30}
    if settings.storage:
        return BlobServiceClient.from_connection_string(settings.storage, **options)
    from azure.identity import DefaultAzureCredential

    url = settings.storage_blob_url or f"https://{settings.storage_account}.blob.core.windows.net"
    return BlobServiceClient(url, credential=DefaultAzureCredential(), **options)


class BlobLeases:
    """Azure Blob leases of `lease_seconds`, renewed by a thread while held, released after."""

    def __init__(self, service: Any, *, lease_seconds: int = 60, container: str = CONTAINER):
        if not 15 <= lease_seconds <= 60:
            raise ValueError("blob leases last 15 to 60 seconds")
        self.lease_seconds = lease_seconds
        self.container = service.get_container_client(container)

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobLeases:
        return cls(blob_service(settings), lease_seconds=settings.lease_seconds)

    @contextlib.contextmanager
    def hold(self, credential_id: str, *, wait: float = 0.0) -> Iterator[Held]:
        from azure.storage.blob import BlobLeaseClient

        blob = self.container.get_blob_client(_checked(credential_id))
        lease = BlobLeaseClient(blob)
        with azure_errors(LEASES, f"take the lease of {credential_id}"):
            acquire(lambda: self._try_acquire(lease, blob), credential_id, wait,
                    interval=0.25)
        held = _BlobHeld(lease, credential_id, self.lease_seconds)
        held.start()
        try:
            yield held
        finally:
            held.release()

    def _try_acquire(self, lease: Any, blob: Any) -> bool:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            lease.acquire(lease_duration=self.lease_seconds)
            return True
        except ResourceNotFoundError:
            self._create_blob(blob)
            return self._try_acquire(lease, blob)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent: another holder
                return False
            raise

    def _create_blob(self, blob: Any) -> None:
        """Create the credential's lease blob, and the container only if it is missing: in
        Azure the template creates it and the apps' roles are scoped to it, so asking to
        create it anyway would be refused with 403."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        try:
            with contextlib.suppress(ResourceExistsError):
                blob.upload_blob(b"", overwrite=False)
        except ResourceNotFoundError:  # ContainerNotFound
            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
            with contextlib.suppress(ResourceExistsError):
                blob.upload_blob(b"", overwrite=False)


class _BlobHeld(threading.Thread):
    """A held blob lease: renewed every third of its duration until released, and aware of
    when it was last confirmed ours.

    `usable` leaves a quarter of the lease as margin: a holder whose last confirmation is older
    than that (its process was paused, storage was unreachable) does not start a write, since
    the lease may expire before the write lands. `release` is also the fence check after a
    write: Azure refuses to release a lease that someone else acquired since (409
    LeaseIdMismatchWithLeaseOperation), and allows it if the lease merely ran out unclaimed, in
    which case no other writer can have written meanwhile.
    """

    def __init__(self, lease: Any, credential_id: str, lease_seconds: float) -> None:
        super().__init__(name=f"lease-renewer-{credential_id}", daemon=True)
        self.lease, self.credential_id = lease, credential_id
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self.confirmed_at = time.monotonic()
        self.lost = False
        self._stop_event = threading.Event()
        self._released: bool | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.lease.renew()
                self.confirmed_at = time.monotonic()
            except Exception as exc:
                if getattr(exc, "status_code", None) == 409:
                    self.lost = True
                log.error("lease on %s could not be renewed (%s); another writer may take it",
                          self.credential_id, type(exc).__name__)

    def usable(self) -> bool:
        age = time.monotonic() - self.confirmed_at
        return not self.lost and age < self.lease_seconds * 0.75

    def confirm(self) -> bool:
        if self.lost or self._released is not None:
            return False
        try:
            self.lease.renew()
        except Exception as exc:
            self.lost = self.lost or getattr(exc, "status_code", None) == 409
            log.warning("lease on %s could not be confirmed (%s)", self.credential_id,
                        type(exc).__name__)
            return False
        self.confirmed_at = time.monotonic()
        return True

    def release(self) -> bool:
        with self._lock:
            if self._released is not None:
                return self._released
            self._stop_event.set()
            if self.is_alive() and threading.current_thread() is not self:
                self.join()
            try:
                self.lease.release()
                self._released = not self.lost
            except Exception as exc:  # the lease expires by itself; never mask the block's error
                lost = getattr(exc, "status_code", None) == 409
                log.log(logging.WARNING if lost else logging.INFO,
                        "lease on %s not released (%s)%s", self.credential_id,
                        type(exc).__name__, ": another writer took it meanwhile" if lost
                        else f"; it expires within {self.lease_seconds:g}s")
                self._released = False
            return self._released


def pacer_from_settings(settings: Settings, vault_url: str):
    """The vault's create pacing: shared through the storage account the leases use when one is
    configured (Functions, several workers), else one process's own window (`broker.pacing`)."""
    from broker.pacing import PACING_BLOB_PREFIX, SharedWindowLimiter, WindowLimiter

    limit = settings.vault_creates_per_10s
    if not settings.uses_blob_leases:
        return WindowLimiter(limit, 10.0)
    from urllib.parse import urlsplit

    host = (urlsplit(vault_url).netloc or "vault").replace(":", "-").lower()
    container = blob_service(settings).get_container_client(CONTAINER)
    return SharedWindowLimiter(container, f"{PACING_BLOB_PREFIX}{host}.json", limit, 10.0)
