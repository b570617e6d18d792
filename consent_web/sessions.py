"""Signed-out operator sessions, remembered server-side so a replayed cookie is refused.

An operator session lives in the signed cookie, with a random session id (`sid`). Signing out
clears the browser's cookie, but a copy of it (kept by an attacker, a proxy log, a shared
machine) would still carry a valid signature for the rest of its 8 hours. So signing out also
records the session id as revoked, and every operator request checks it.

The record is a small blob in the storage account the apps already have (`AzureWebJobsStorage`,
the `broker-leases` container the site's identity may already write, under `revoked-sessions/`),
so every instance of the site sees it; without a storage account (local development) it is a
file under the state dir. Only a SHA-256 digest of the session id is stored, never the cookie.
Tokens stay in Key Vault: these records hold no token, no name, nothing but the digest and
when it may be forgotten. A record that cannot be checked counts as revoked (fail closed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from broker.logs import get_logger

PREFIX = "revoked-sessions/"
log = get_logger(__name__)


class Revocations(Protocol):
    def revoke(self, sid: str, until: float) -> None:
        """Remember `sid` as signed out until epoch `until` (when its cookie expires anyway)."""

    def is_revoked(self, sid: str) -> bool:
        """Whether `sid` was signed out; True when that cannot be checked."""


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class _Known:
    """Revocations this process has seen: they never become valid again, so no expiry check
    is needed beyond dropping them once their cookie could no longer be used."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, digest: str, until: float) -> None:
        with self._lock:
            now = time.time()
            self._until = {d: u for d, u in self._until.items() if u > now}
            self._until[digest] = until

    def __contains__(self, digest: str) -> bool:
        return digest in self._until


class FileRevocations:
    """One empty file per signed-out session under `directory` (mode 0700), for one machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._known = _Known()

    def revoke(self, sid: str, until: float) -> None:
        digest = _digest(sid)
        self._known.add(digest, until)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / digest
        path.touch(mode=0o600)
        os.utime(path, (until, until))  # mtime = when the record may be forgotten
        self._forget_expired()

    def is_revoked(self, sid: str) -> bool:
        digest = _digest(sid)
        if digest in self._known:
            return True
        try:
            return (self.directory / digest).exists()
        except OSError:
            return True

    def _forget_expired(self) -> None:
        now = time.time()
        with contextlib.suppress(OSError):
            for path in self.directory.iterdir():
                if path.stat().st_mtime < now:
                    path.unlink(missing_ok=True)


class BlobRevocations:
    """One empty blob per signed-out session, shared by every instance of the site."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self._known = _Known()

    @classmethod
    def from_settings(cls, settings) -> BlobRevocations:
        from broker.storage import broker_container

        return cls(broker_container(settings))

    def revoke(self, sid: str, until: float) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        digest = _digest(sid)
        self._known.add(digest, until)
        blob = self.container.get_blob_client(PREFIX + digest)
        metadata = {"forget_after": str(int(until))}
        try:
            blob.upload_blob(b"", overwrite=True, metadata=metadata)
        except ResourceNotFoundError:  # the container is made by the template, or on first use
            with contextlib.suppress(Exception):
                self.container.create_container()
            blob.upload_blob(b"", overwrite=True, metadata=metadata)

    def is_revoked(self, sid: str) -> bool:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        digest = _digest(sid)
        if digest in self._known:
            return True
        try:
            self.container.get_blob_client(PREFIX + digest).get_blob_properties()
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            log.warning("signed-out sessions could not be checked (%s); refusing the session",
                        type(exc).__name__)
            return True
        self._known.add(digest, time.time() + 86400)
        return True


def from_settings(settings) -> Revocations:
    """Blobs when the apps have a storage account (as leases do), else files in the state dir."""
    if settings.uses_blob_leases:
        return BlobRevocations.from_settings(settings)
    return FileRevocations(Path(settings.state_dir) / "revoked-sessions")
