"""Fencing: a writer that lost its lease never stays the current version over a newer consent.

Key Vault has no conditional write (no ETag on a secret create), so the lease cannot stop a
writer that was paused past its lease (a frozen process, a partition from storage) from creating
a version after the next holder wrote a consent. What the broker can do is make sure such a
write does not *stay* current, without costing the ordinary rotation any request:

1. before its PUT a writer checks that its lease was confirmed recently enough (`Held.usable`,
   no request): a writer paused longer than a quarter of the lease never writes;
2. its read-back is an unversioned GET, which shows whether anyone wrote after it;
3. releasing the lease is the check that nobody took it meanwhile (Azure refuses to release a
   lease someone else acquired since).

Only when (2) or (3) shows contention does `settle` look at the versions (a listing: rare) and
make the newest version by `obtained_at` current again, by writing its token once more as the
newest version (`Vault.republish`: same token, same tags, same `obtained_at`).

Why `obtained_at` orders correctly: a rotation stamps it when it redeems, before check (1); the
next holder can only take the lease after that holder's last confirmation plus the whole lease,
and (1) leaves a quarter of the lease between the last confirmation and the PUT. So a stale
rotation's `obtained_at` is always older than anything the next holder obtains (a consent, or a
rotation of it), with a margin of a quarter lease (15 s) for clock skew between instances.

The contract says a new version is written only when a new token was obtained; a republish is
the one exception, and deliberately so: Key Vault's current version is what every consumer
receives, Key Vault cannot promote an old version, and disabling the stale version would make
the unversioned URL answer 403. The copy holds a token that is valid (Entra keeps a token valid
until its own expiry), with the `obtained_at` and expiry of the original.
"""

from __future__ import annotations

from datetime import UTC, datetime

from broker.credentials import TokenVersion
from broker.logs import get_logger

log = get_logger(__name__)


def settle(vault, credential_id: str, written, held, *, release: bool = True) -> bool:
    """After a write under `held`: release the lease (or, with `release=False`, confirm it is
    still ours) and, if the write may have been made without it or someone wrote after it, put
    the newest version back on top.

    Returns True when nothing needed repairing (the usual case: no extra request).
    """
    kept = held.release() if release else held.confirm()
    if kept and written.current:
        return True
    log.warning("fencing %s: %s; checking which version must be current", credential_id,
                "the lease was lost before the write was settled" if not kept
                else "another version was written after ours")
    restore_newest(vault, credential_id)
    return False


def restore_newest(vault, credential_id: str) -> TokenVersion | None:
    """Make the newest version (by `obtained_at`) Key Vault's current one; returns the
    version republished, or None when it already was current."""
    versions = [v for v in vault.versions(credential_id) if v.enabled or v.is_placeholder]
    if not versions:
        return None
    floor = datetime.min.replace(tzinfo=UTC)
    newest = max(versions, key=lambda v: (v.obtained_at, v.created_on or floor))
    current = vault.current(credential_id).version
    if current.version == newest.version or _same_token_line(current, newest):
        return None
    return vault.republish(credential_id, newest).version


def _same_token_line(current: TokenVersion, newest: TokenVersion) -> bool:
    """A copy made by an earlier repair: same tags, same `obtained_at`."""
    return (current.obtained_at == newest.obtained_at and current.source == newest.source
            and current.tags.get("credential") == newest.tags.get("credential"))
