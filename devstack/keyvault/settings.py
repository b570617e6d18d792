"""Per-vault behaviour that real vaults differ in: purge protection and realistic timing.

- **Purge protection** (`enablePurgeProtection` in `infra/modules/keyvault.bicep`): versions
  report `recoveryLevel` `Recoverable` instead of `Recoverable+Purgeable`, and a purge is
  refused with 403 `Forbidden` until the retention period ends.
- **Realistic timing** (`--realistic`): a delete takes `DELETE_SECONDS` of real time; until it
  completes the secret is gone but not yet listed as deleted (`GET /deletedsecrets/<name>` is
  404), and a purge, a recover or a write of the name is 409 `ObjectIsBeingDeleted`. List pages
  come back short, and now and then empty, with a `nextLink` (as Key Vault's do); the SDK pages
  on, a client that stops at a short or empty page loses items.

Both start from the devstack's command-line switches and can be changed per vault through the
admin endpoint (`POST /vaults`); `POST /reset` restores the start-up values.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

DELETE_SECONDS = 2.0


@dataclass
class VaultSettings:
    purge_protection: bool = False
    realistic: bool = False

    @property
    def recovery_level(self) -> str:
        return "Recoverable" if self.purge_protection else "Recoverable+Purgeable"

    def as_dict(self) -> dict:
        return {"purge_protection": self.purge_protection, "realistic": self.realistic,
                "recovery_level": self.recovery_level}


@dataclass
class Deletions:
    """Deletes still in progress (realistic timing): lower-case name -> when they complete."""

    _pending: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, name: str, seconds: float = DELETE_SECONDS) -> None:
        with self._lock:
            self._pending[name.lower()] = time.monotonic() + seconds

    def in_progress(self, name: str) -> bool:
        with self._lock:
            done_at = self._pending.get(name.lower())
            if done_at is None:
                return False
            if time.monotonic() >= done_at:
                del self._pending[name.lower()]
                return False
            return True

    def names(self) -> set[str]:
        with self._lock:
            now = time.monotonic()
            return {n for n, done_at in self._pending.items() if done_at > now}

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


def short_page_size(size: int, marker: str | None, skips: int) -> int:
    """How many items a realistic page holds: 0..size, decided by the page's position.

    The same request always gets the same page (a retried request sees what the first saw);
    the first page is often empty, and after two empty pages in a row one item at least
    comes, so paging always ends.
    """
    digest = hashlib.sha256(f"{marker}|{skips}".encode()).digest()[0]
    count = digest % (size + 1)
    if marker is None and skips == 0:
        count = 0 if digest % 2 else count
    if skips >= 2:
        count = max(count, 1)
    return min(count, size)
