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
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.credentials import is_credential_id
from broker.errors import BrokerError, Conflict, InvalidInput, TransientFailure
from broker.logs import get_logger

if TYPE_CHECKING:
    from broker.settings import Settings

CONTAINER = "broker-leases"
log = get_logger(__name__)


class Leases(Protocol):
    def hold(self, credential_id: str, *, wait: float = 0.0) -> AbstractContextManager[None]:
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
    def hold(self, credential_id: str, *, wait: float = 0.0) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{_checked(credential_id)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            acquire(lambda: _try_flock(fd), credential_id, wait, interval=0.05, max_interval=0.5)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class BlobLeases:
    """Azure Blob leases of `lease_seconds`, renewed by a thread while held, released after."""

    def __init__(self, service: Any, *, lease_seconds: int = 60, container: str = CONTAINER):
        if not 15 <= lease_seconds <= 60:
            raise ValueError("blob leases last 15 to 60 seconds")
        self.lease_seconds = lease_seconds
        self.container = service.get_container_client(container)

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobLeases:
        from azure.storage.blob import BlobServiceClient

        options = {"retry_total": 2, "connection_timeout": 10, "read_timeout": 30}
        if settings.storage:
            service = BlobServiceClient.from_connection_string(settings.storage, **options)
        else:
            from azure.identity import DefaultAzureCredential

            url = settings.storage_blob_url or \
                f"https://{settings.storage_account}.blob.core.windows.net"
            service = BlobServiceClient(url, credential=DefaultAzureCredential(), **options)
        return cls(service, lease_seconds=settings.lease_seconds)

    @contextlib.contextmanager
    def hold(self, credential_id: str, *, wait: float = 0.0) -> Iterator[None]:
        from azure.storage.blob import BlobLeaseClient

        blob = self.container.get_blob_client(_checked(credential_id))
        lease = BlobLeaseClient(blob)
        with _storage_errors():
            acquire(lambda: self._try_acquire(lease, blob), credential_id, wait,
                    interval=0.25)
        renewer = _Renewer(lease, credential_id, self.lease_seconds / 3)
        renewer.start()
        try:
            yield
        finally:
            renewer.stop()
            try:
                lease.release()
            except Exception as exc:  # the lease expires by itself; never mask the block's error
                log.warning("lease on %s not released (%s); it expires within %ss",
                            credential_id, type(exc).__name__, self.lease_seconds)

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


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    from azure.core import exceptions as az

    try:
        yield
    except BrokerError:
        raise
    except az.ClientAuthenticationError as exc:
        raise BrokerError(
            "Azure Storage refused this identity for the lease.",
            hint="Check AzureWebJobsStorage, or give the identity 'Storage Blob Data "
                 "Contributor' on the storage account.") from exc
    except az.HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise BrokerError(
                f"Azure Storage denied the lease ({exc.status_code}).",
                hint="Give the identity 'Storage Blob Data Contributor' on the storage "
                     "account, or check AzureWebJobsStorage.") from exc
        raise TransientFailure(f"Azure Storage answered {exc.status_code} for the lease.") \
            from exc
    except (az.ServiceRequestError, az.ServiceResponseError) as exc:
        raise TransientFailure("Azure Storage could not be reached for the lease.") from exc


class _Renewer(threading.Thread):
    """Renews a held lease every third of its duration until stopped."""

    def __init__(self, lease: Any, credential_id: str, interval: float) -> None:
        super().__init__(name=f"lease-renewer-{credential_id}", daemon=True)
        self.lease, self.credential_id, self.interval = lease, credential_id, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.lease.renew()
            except Exception as exc:
                log.error("lease on %s could not be renewed (%s); another writer may take it",
                          self.credential_id, type(exc).__name__)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
