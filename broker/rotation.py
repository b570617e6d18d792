"""Rotation: redeem each refresh token before it ages out; store the fresh one as the next version.

The order of a rotation is what makes it safe: take the credential's lease, read Key Vault's
current version (one GET, value and tags), redeem it, check the lease is still trustworthy,
write the next version and read the current one back (four requests, however long the
history). Everyone who writes a version holds the lease, so nothing can land in between; a
writer that lost its lease unnoticed is caught after its write and the newest version put
back on top (`broker.fencing`). Old versions are never deleted, and Entra keeps a redeemed
refresh token valid until its own expiry, so a crash anywhere in between loses nothing: the
next run simply redeems again.

`plan` decides what is due tonight from one listing of the vault, spreading the work so that a
night never carries more than its share of all credentials.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from broker.credentials import (
    INVITE_TAG,
    REASON_TAG,
    VALIDATION_TAG,
    Check,
    Credential,
    Reason,
    Source,
    Status,
    TokenVersion,
    reason_for,
)
from broker.errors import (
    AppMisconfigured,
    BrokerError,
    Conflict,
    NeedsConsent,
    TransientFailure,
)
from broker.fencing import settle
from broker.identity import Redemption
from broker.logs import bound, correlation_id, get_logger
from broker.notify import Event

log = get_logger(__name__)

Outcome = Literal["rotated", "skipped", "needs-consent", "error", "deferred"]
# statuses that only a human can leave: rotating them would only fail again
_WAITING_FOR_HUMAN = (Status.PENDING_CONSENT, Status.NEEDS_CONSENT)
# tags a new version inherits from the one it replaces (the contract's tags are set by the vault);
# a status reason is not among them: a new token is what a failure's fix looks like
_CARRIED_TAGS = (INVITE_TAG, VALIDATION_TAG)


@dataclass(frozen=True)
class RotationResult:
    credential_id: str
    outcome: Outcome
    version: str | None
    previous_version: str | None
    message: str


@dataclass(frozen=True)
class DueItem:
    credential_id: str
    version: str | None  # None when the listing does not name the current version
    reason: Literal["age", "expiry"]
    delay_s: float


@dataclass(frozen=True)
class RotationSummary:
    rotated: int = 0
    skipped: int = 0
    needs_consent: int = 0
    errors: int = 0
    deferred: int = 0
    results: list[RotationResult] = field(default_factory=list)

    @classmethod
    def of(cls, results: Sequence[RotationResult]) -> RotationSummary:
        count = {o: sum(1 for r in results if r.outcome == o)
                 for o in ("rotated", "skipped", "needs-consent", "error", "deferred")}
        return cls(rotated=count["rotated"], skipped=count["skipped"],
                   needs_consent=count["needs-consent"], errors=count["error"],
                   deferred=count["deferred"], results=list(results))


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one step on TransientFailure: exponential backoff with jitter, at least the
    service's Retry-After, and never a wait longer than `max_wait` (then it is the next run's)."""

    tries: int = 3
    base: float = 1.0
    cap: float = 10.0
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.cap, self.base * 2 ** attempt) * random.uniform(0.5, 1.0)  # noqa: S311
        return max(backoff, retry_after or 0.0)


def status_tags(status: Status, reason: Reason | None) -> dict[str, str | None]:
    """The tag changes that set a status with its reason (no reason clears the tag)."""
    return {"status": status.value, REASON_TAG: reason.tag() if reason else None}


def status_message(credential_id: str, status: Status, reason: Reason) -> str:
    """What a notification says happened: the new status and the reason, with its code."""
    words = {Status.NEEDS_CONSENT: "needs consent", Status.ERROR: "is in error"}
    return f"Credential {credential_id} {words.get(status, status.value)}: {reason.summary()}."


def action_text(credential_id: str, reason: Reason) -> str:
    command = reason.command(credential_id)
    return f"{reason.action}" + (f" From the command line: {command}" if command else "")


# -- planning ---------------------------------------------------------------------------------


def spread_delay(credential_id: str, window_hours: float) -> float:
    """A fixed offset into the night's window for this credential, so reruns agree."""
    digest = hashlib.sha256(credential_id.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2 ** 64
    return round(fraction * window_hours * 3600, 3)


def nightly_share(total: int, rotate_after_days: int) -> int:
    """How many age-based rotations one night takes: all credentials over the rotation period."""
    return max(1, math.ceil(total / max(1, rotate_after_days)))


def plan(credentials: Iterable[Credential], now: datetime, settings) -> list[DueItem]:
    """What to rotate tonight.

    Due: the latest version is older than `rotate_after_days`, or within `warn_days` of its
    `expires_on`. Those near expiry are always taken; age-based ones fill up to the nightly
    share, oldest first, and the rest wait for the next nights (still far from expiry).
    """
    rotatable: list[tuple[Credential, TokenVersion]] = [
        (c, c.latest) for c in credentials
        if c.latest is not None and c.latest.enabled and c.stored_status not in _WAITING_FOR_HUMAN
    ]
    age_limit = timedelta(days=settings.rotate_after_days)
    warn = timedelta(days=settings.warn_days)
    near_expiry, aged = [], []
    for credential, latest in rotatable:
        if latest.expires_on is not None and latest.expires_on - now <= warn:
            near_expiry.append((credential, latest))
        elif now - latest.obtained_at >= age_limit:
            aged.append((credential, latest))
    aged.sort(key=lambda pair: (pair[1].obtained_at, pair[0].id))
    room = max(0, nightly_share(len(rotatable), settings.rotate_after_days) - len(near_expiry))
    items = [(c, v, "expiry") for c, v in near_expiry] + [(c, v, "age") for c, v in aged[:room]]
    items.sort(key=lambda t: (t[1].obtained_at, t[0].id))
    return [
        DueItem(c.id, v.version, reason, spread_delay(c.id, settings.rotate_window_hours))
        for c, v, reason in items
    ]


# -- rotating ---------------------------------------------------------------------------------


class Rotator:
    """Rotates credentials under their lease; also the renewal step `validate` reuses."""

    def __init__(self, settings, vault, leases, identity, *, notify: Callable[[Event], None],
                 invites, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.identity = identity
        self.invites = invites
        self._notify = notify
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        # called with the credential id between redeem and write (`after_redeem`), and after
        # the lease check right before the PUT (`before_write`): seams for tests that need to
        # interleave another writer, freeze a writer or crash the process exactly there
        self.after_redeem: Callable[[str], None] | None = None
        self.before_write: Callable[[str], None] | None = None

    def due(self, now: datetime | None = None) -> list[DueItem]:
        return plan(self.vault.list_credentials(), now or datetime.now(UTC), self.settings)

    # one credential

    def rotate(self, credential_id: str, *, expected_version: str | None = None,
               wait: float = 0.0, older_than: datetime | None = None) -> RotationResult:
        """Rotate one credential; CredentialNotFound for an unknown id, else a result.

        `expected_version` (or, when the caller does not know the version id, `older_than`:
        the current version must have been obtained before it) makes a stale request a no-op.
        """
        with ExitStack() as stack:
            stack.enter_context(bound(credential=credential_id))
            try:
                held = stack.enter_context(self.leases.hold(credential_id, wait=wait))
            except Conflict:
                return RotationResult(credential_id, "skipped", None, None,
                                      "Another writer holds the credential's lease.")
            return self._rotate_held(credential_id, expected_version, older_than, held)

    def _rotate_held(self, credential_id: str, expected_version: str | None,
                     older_than: datetime | None, held) -> RotationResult:
        try:
            current = self.retrying(lambda: self.vault.current(credential_id))
        except TransientFailure as exc:
            return RotationResult(credential_id, "deferred", None, None, str(exc))
        latest = current.version
        previous = latest.version
        if current.value is None or latest.is_placeholder or not latest.enabled:
            return RotationResult(credential_id, "needs-consent", None, previous,
                                  "Not consented yet: an admin must consent first.")
        if (expected_version is not None and latest.version != expected_version) or (
                older_than is not None and latest.obtained_at >= older_than):
            return RotationResult(credential_id, "skipped", None, previous,
                                  "A newer version exists already (a consent or rotation).")
        credential = self.vault.credential_of(credential_id, latest, secret_expiry=False)
        try:
            new, _ = self.renew(credential, current, source=Source.ROTATION, held=held)
        except Conflict as exc:
            return RotationResult(credential_id, "skipped", None, previous, str(exc))
        except (NeedsConsent, AppMisconfigured) as exc:
            outcome = self.record_failure(credential, latest, exc)
            return RotationResult(credential_id, outcome, None, previous, str(exc))
        except TransientFailure as exc:
            self._warn_if_at_risk(credential, latest, exc)
            return RotationResult(credential_id, "deferred", None, previous,
                                  f"{exc} Left for the next run.")
        except BrokerError as exc:
            log.warning("rotation of %s failed: %s", credential_id, exc)
            return RotationResult(credential_id, "error", None, previous, str(exc))
        return RotationResult(credential_id, "rotated", new.version, previous,
                              "Rotated: the new token is stored and read back.")

    def renew(self, credential: Credential, current, *, source: Source, held,
              scopes: Sequence[str] | None = None, client_secret: str | None = None,
              release: bool = True) -> tuple[TokenVersion, Redemption]:
        """Redeem the current token and store the fresh one as the next version; call with the
        lease `held`. Four requests: the caller's GET of the current version, the token request,
        the PUT and the read-back GET (see `Vault.write_version`); no listing. `client_secret`
        tries a partner app's new secret before it is stored. The lease is released at the end
        (the fence check); a caller with more to do under it passes `release=False`.

        Conflict when the lease can no longer be trusted to outlast the write (`broker.fencing`):
        the fresh token is dropped (the redeemed one stays valid until its own expiry).
        """
        latest = current.version
        redemption = self.retrying(lambda: self.identity.redeem(
            credential, current.value, scopes, client_secret=client_secret))
        # stamped at the redemption, before the lease check: what fencing orders versions by
        obtained_at = datetime.now(UTC)
        if self.after_redeem is not None:
            self.after_redeem(credential.id)
        carried = {k: latest.tags[k] for k in _CARRIED_TAGS if latest.tags.get(k)}
        check = latest.check
        if check is not None:  # written in one tag from now on
            carried[VALIDATION_TAG] = check.tag()

        def write():
            if not held.usable():
                raise Conflict("The credential's lease may have run out while its token was "
                               "being redeemed; the fresh token was discarded (the stored one "
                               "stays valid) and the next run rotates again.")
            if self.before_write is not None:
                self.before_write(credential.id)
            return self.vault.write_version(
                credential, redemption.refresh_token, source=source, obtained_at=obtained_at,
                consented_by=latest.consented_by, mfa=latest.mfa, roles=latest.roles,
                extra_tags=carried,
            )

        written = self.retrying(write)
        settle(self.vault, credential.id, written, held, release=release)
        log.info("stored version %s of %s (%s)", written.version.version, credential.id,
                 source.value)
        return written.version, redemption

    def retrying(self, step):
        """Run one step, retrying TransientFailure per the policy; the last failure propagates."""
        for attempt in range(self.retry.tries):
            try:
                return step()
            except TransientFailure as exc:
                if attempt + 1 >= self.retry.tries:
                    raise
                delay = self.retry.delay(attempt, exc.retry_after)
                if delay > self.retry.max_wait:
                    raise
                log.info("transient failure (%s); retrying in %.2f s", exc, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    # failures that need a human

    def record_failure(self, credential: Credential, latest: TokenVersion,
                       exc: NeedsConsent | AppMisconfigured, *, by: str = "rotation",
                       validated_at: datetime | None = None) -> Outcome:
        """Tag the latest version with the status and its reason (one PATCH, with the
        validation's result when a validation found it), and tell someone; the stored token
        itself is kept. A consent link goes with a needs-consent notification: the open one if
        the operator already sent one (never replaced behind their back), else a new one.
        """
        needs_consent = isinstance(exc, NeedsConsent)
        status = Status.NEEDS_CONSENT if needs_consent else Status.ERROR
        outcome: Outcome = "needs-consent" if needs_consent else "error"
        reason = reason_for(exc, by=by, at=datetime.now(UTC))
        tags = status_tags(status, reason)
        if validated_at is not None:
            tags.update(Check(outcome, validated_at).tag_changes())
        invite_url = None
        try:
            self.retrying(lambda: self.vault.update_tags(
                credential.id, latest.version, base=latest, **tags))
            if needs_consent:
                invite_url = self.invites.create(credential.id, reuse_open=True).url
        except BrokerError as failure:
            log.warning("could not record %s on %s: %s", status.value, credential.id, failure)
        self._notify(Event(
            kind="needs-consent" if needs_consent else "error", credential_id=credential.id,
            message=status_message(credential.id, status, reason),
            action=action_text(credential.id, reason), invite_url=invite_url,
        ))
        return outcome

    def _warn_if_at_risk(self, credential: Credential, latest: TokenVersion,
                         exc: TransientFailure) -> None:
        expires = latest.expires_on
        if expires is not None and expires - datetime.now(UTC) <= timedelta(
                days=self.settings.warn_days):
            self._notify(Event(
                kind="rotation-failed", credential_id=credential.id,
                message=f"Rotation was deferred and the token expires on {expires:%Y-%m-%d}: "
                        f"{exc}",
                action="check that Key Vault and Entra ID are reachable"))

    # many credentials

    def rotate_many(self, work: Iterable[tuple[str, str | None]], *,
                    progress: Callable[[RotationResult], None] | None = None) -> RotationSummary:
        """Rotate (credential id, expected version) pairs concurrently (each write paced below
        Key Vault's create limit by `renew`); results come back in the order given."""
        work = list(work)
        caller = correlation_id.get()  # worker threads do not inherit the caller's context

        def one(item: tuple[str, str | None]) -> RotationResult:
            credential_id, expected = item
            try:
                with bound(correlation=caller):
                    result = self.rotate(credential_id, expected_version=expected)
            except BrokerError as exc:  # CredentialNotFound included: one bad id, one result
                result = RotationResult(credential_id, "error", None, None, str(exc))
            if progress is not None:
                progress(result)
            return result

        if not work:
            return RotationSummary.of([])
        workers = max(1, min(self.settings.rotate_concurrency, len(work)))
        with ThreadPoolExecutor(workers, thread_name_prefix="rotate") as pool:
            results = list(pool.map(one, work))
        return RotationSummary.of(results)
