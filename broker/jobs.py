"""The scheduled and queued jobs, shared by the Azure Functions triggers and the local worker.

Each job takes the `Broker` facade and plain data (a message body, an event's data), so the
same code runs under the Functions host and under `broker worker`. The rules that make the
queue safe live here: a message names a credential and the version seen when it was enqueued,
never a token; a duplicate or stale message is a no-op; only a transient failure raises (so the
queue retries it); failures that need a human are recorded and notified by the broker and end
the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.credentials import Status
from broker.errors import BrokerError, CredentialNotFound, InvalidInput, TransientFailure
from broker.logs import bound, get_logger
from broker.notify import Event
from broker.queue import (
    MAX_DEQUEUE_COUNT,
    POISON_QUEUE_NAME,
    InvalidMessage,
    RotationMessage,
    RotationQueue,
)

if TYPE_CHECKING:
    from broker.service import Broker

log = get_logger(__name__)

LEASE_WAIT_S = 15.0  # a duplicate waits out the writer holding the lease, then finds it stale
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
EXPIRY_EVENTS = (NEAR_EXPIRY, EXPIRED)


SEND_CONCURRENCY = 16  # queue sends in flight at once from a timer


def send_all(queue: RotationQueue, messages: list[tuple[str, float]]) -> int:
    """Send (body, delay) pairs a few at a time; returns how many were sent.

    Azure Storage queues have no batch send, so a timer that enqueues a fleet sends one message
    per credential, `SEND_CONCURRENCY` in flight (about 16 x 1/RTT messages a second; 50,000
    take about a minute, well inside one invocation). One credential per message, rather than
    several packed into one, keeps the host's rules per credential: a failure retries only that
    credential, a poisoned message names one credential, and the host spreads messages over
    instances. A send that fails is logged and skipped (the next run finds the credential
    again); the count says how many made it.
    """
    if not messages:
        return 0

    def one(item: tuple[str, float]) -> bool:
        body, delay = item
        try:
            queue.send(body, delay_s=delay)
        except BrokerError as exc:
            log.warning("could not enqueue a message on %s: %s", getattr(queue, "name", "?"),
                        exc)
            return False
        return True

    workers = max(1, min(SEND_CONCURRENCY, len(messages)))
    with ThreadPoolExecutor(workers, thread_name_prefix="enqueue") as pool:
        return sum(pool.map(one, messages))


def enqueue_due(service: Broker, queue: RotationQueue, now: datetime | None = None) -> list:
    """Put one message per due credential on the queue, delayed as the broker planned (spread
    over the night); returns the DueItems enqueued. Re-running it only adds duplicates, which
    are no-ops.

    Its requests are one listing of the vault's secret properties (25 a page: their tags hold
    `obtained_at` and `status`, enough to decide what is due) plus one send per due credential,
    and no request per credential: the listing names no version ids, so a message says "the
    version obtained before `enqueued_at`", which the rotation checks on the version it reads
    anyway.
    """
    now = now or datetime.now(UTC)
    items = service.due(now)
    if not items:
        log.info("due-scan: nothing due")
        return []
    messages = [(RotationMessage(item.credential_id, item.version, now).dumps(), item.delay_s)
                for item in items]
    sent = send_all(queue, messages)
    log.info("due-scan: %d of %d due credentials enqueued on %s", sent, len(items),
             getattr(queue, "name", "?"))
    if sent < len(items):
        raise TransientFailure(f"The due-scan enqueued only {sent} of {len(items)} "
                               "credentials; run it again (duplicates are no-ops).")
    return items


def enqueue_validations(service: Broker, queue: RotationQueue, now: datetime | None = None) -> int:
    """The daily validation, fanned out: one `validate` message per active (or expiring)
    credential from one listing, spread over the rotation window; returns how many were sent.

    Client secrets near their expiry are told here, from the same listing (it carries each
    `cs-<id>`'s expiry); the rest happens per credential in `validate_message`.
    """
    now = now or datetime.now(UTC)
    warn_days = service.settings.warn_days
    window = service.settings.rotate_window_hours
    targets = [c for c in service.list_credentials()
               if c.status(now, warn_days) in (Status.ACTIVE, Status.EXPIRING)]
    for credential in targets:
        _warn_if_secret_expires(service, credential, now, warn_days)
    from broker.rotation import spread_delay

    messages = [(RotationMessage(c.id, None, now, job="validate").dumps(),
                 spread_delay(c.id, window)) for c in targets]
    sent = send_all(queue, messages)
    log.info("validation: %d of %d credentials enqueued", sent, len(targets))
    return sent


def handle_message(service: Broker, body: str | bytes):
    """The queue trigger's one entry: rotate or validate, as the message says."""
    message = _parse(body)
    if message is None:
        return None
    if message.job == "validate":
        return validate_message(service, message)
    return rotate_message(service, message)


def rotate_message(service: Broker, body):
    """Rotate the credential a message names, once. Returns the RotationResult, or None when
    there was nothing to do (not our message, credential removed, already rotated since).

    Raises TransientFailure when the rotation was deferred, so the queue tries again.
    """
    message = body if isinstance(body, RotationMessage) else _parse(body)
    if message is None:
        return None
    if message.job != "rotate":
        return validate_message(service, message)
    with bound(credential=message.credential_id):
        try:
            # without a version id (the due-scan lists none), what was current when the
            # message was written is whatever was obtained before it
            result = service.rotate(
                message.credential_id, expected_version=message.version, wait=LEASE_WAIT_S,
                older_than=message.enqueued_at if message.version is None else None)
        except CredentialNotFound:
            log.info("rotate %s: skipped (the credential was removed)", message.credential_id)
            return None
        log.info("rotate %s: %s (%s)", message.credential_id, result.outcome, result.message)
        if result.outcome == "deferred":
            raise TransientFailure(f"Rotation of {message.credential_id} was deferred: "
                                   f"{result.message}")
        return result


def validate_message(service: Broker, message: RotationMessage):
    """Validate the credential a `validate` message names; returns the report (None when the
    credential was removed). Raises TransientFailure when a service was unavailable, so the
    queue tries again later; failures a person must fix are notified."""
    with bound(credential=message.credential_id):
        try:
            report = service.validate(message.credential_id)
        except CredentialNotFound:
            log.info("validate %s: skipped (the credential was removed)", message.credential_id)
            return None
        log.info("validate %s: %s (%s)", message.credential_id,
                 "ok" if report.ok else "failed", report.message)
        if report.result in ("unavailable", "busy"):
            raise TransientFailure(f"Validation of {message.credential_id}: {report.message}")
        if not report.ok:
            _notify_validation(service, message.credential_id, report)
        return report


def poison_message(service: Broker, body: str | bytes) -> bool:
    """A rotation message that failed every try: flag the credential `error` and notify.

    Returns whether the credential was flagged. A message about a version that has since been
    replaced (a consent, a later rotation) is only logged: the credential is fine now. A
    validation that failed every try is only logged: the next day's validation tries again.
    """
    message = _parse(body)
    if message is None:
        return False
    if message.job == "validate":
        log.warning("poison: validation of %s failed on every try (a service unavailable); "
                    "the next validation tries again", message.credential_id)
        return False
    with bound(credential=message.credential_id):
        try:
            latest = service.get_credential(message.credential_id).latest
        except CredentialNotFound:
            log.info("poison %s: the credential was removed; nothing to flag",
                     message.credential_id)
            return False
        superseded = latest is not None and (
            (message.version is not None and latest.version != message.version)
            or (message.version is None and latest.obtained_at >= message.enqueued_at))
        if superseded:
            log.info("poison %s: a newer version exists; not flagged", message.credential_id)
            return False
        service.mark_error(
            message.credential_id,
            f"Rotation failed {MAX_DEQUEUE_COUNT} times in a row (message enqueued "
            f"{message.enqueued_at:%Y-%m-%d %H:%M} UTC) and was moved to {POISON_QUEUE_NAME}. "
            "The stored token is unchanged and still valid until its expiry.",
        )
        log.warning("poison %s: flagged error and notified", message.credential_id)
        return True


def near_expiry_event(service: Broker, event_data: Mapping[str, Any], *,
                      event_type: str = NEAR_EXPIRY):
    """Key Vault says a version of `rt-<id>` is near expiry (or expired): rotate it now.

    Old versions expire all the time (rotation never deletes them), so only an event about the
    latest version means anything. When the rotation cannot happen now, a human is told; the
    nightly due-scan takes near-expiry credentials first anyway. Returns the RotationResult or
    None when the event is not about a live refresh token.
    """
    from broker.vault import credential_id_from_secret_name

    if event_type not in EXPIRY_EVENTS or not isinstance(event_data, Mapping):
        return None
    name, version = event_data.get("ObjectName"), event_data.get("Version")
    credential_id = credential_id_from_secret_name(name) if isinstance(name, str) else None
    if credential_id is None or event_data.get("ObjectType", "Secret") != "Secret":
        return None
    with bound(credential=credential_id):
        try:
            latest = service.get_credential(credential_id).latest
        except InvalidInput:  # CredentialNotFound, or a name that is no credential id
            log.info("%s for %s: no such credential; ignored", event_type, name)
            return None
        if latest is None or (version and latest.version != version):
            log.info("%s for %s: about an older version; ignored", event_type, name)
            return None
        try:
            result = service.rotate(credential_id, expected_version=latest.version,
                                   wait=LEASE_WAIT_S)
        except BrokerError as exc:
            _tell(service, credential_id, event_type, str(exc))
            return None
        log.info("%s for %s: %s (%s)", event_type, name, result.outcome, result.message)
        if result.outcome == "deferred":
            _tell(service, credential_id, event_type, result.message)
        return result


def _tell(service: Broker, credential_id: str, event_type: str, why: str) -> None:
    state = "has expired" if event_type == EXPIRED else "is near its expiry"
    _notify(service, "token-expiring", credential_id,
            f"Key Vault reports that the refresh token {state} and it could not be rotated "
            f"now: {why}",
            f"run `broker rotate {credential_id}` once Key Vault and Entra ID are reachable; "
            "if the token has expired, an admin must consent again")


def validate_all(service: Broker) -> list:
    """Validate every active (or expiring) credential, a few at a time; returns the reports.

    The broker records each result on the version and notifies the failures it classifies
    (needs consent, app errors); this adds the ones only a person can fix that it leaves to the
    caller (no MFA, Partner Center refusing) and client secrets close to their expiry.
    """
    now = datetime.now(UTC)
    warn_days = service.settings.warn_days
    credentials = service.list_credentials()
    targets = [c for c in credentials
               if c.status(now, warn_days) in (Status.ACTIVE, Status.EXPIRING)]

    def one(credential):
        with bound(credential=credential.id):
            try:
                report = service.validate(credential.id)
            except BrokerError as exc:
                log.warning("validate %s: %s", credential.id, exc)
                return None
            log.info("validate %s: %s (%s)", credential.id, "ok" if report.ok else "failed",
                     report.message)
            if not report.ok:
                _notify_validation(service, credential.id, report)
            _warn_if_secret_expires(service, credential, now, warn_days)
            return report

    if not targets:
        log.info("validate-all: no active credentials")
        return []
    workers = max(1, min(service.settings.rotate_concurrency, len(targets)))
    with ThreadPoolExecutor(workers, thread_name_prefix="validate") as pool:
        reports = [r for r in pool.map(one, targets) if r is not None]
    log.info("validate-all: %d ok, %d failed of %d", sum(r.ok for r in reports),
             sum(not r.ok for r in reports), len(targets))
    return reports


def _notify_validation(service: Broker, credential_id: str, report) -> None:
    """Notify a failed validation unless the broker did already (needs-consent/error) or it is
    worth only a retry tomorrow (a service unavailable, another writer busy)."""
    kinds = {"no-mfa": "needs-consent", "partner-center": "error"}
    if report.result in kinds:
        from broker.credentials import Reason

        reason = Reason(report.result, report.checked_at, "validation")
        command = reason.command(credential_id)
        _notify(service, kinds[report.result], credential_id,
                f"Validation of {credential_id} failed: {reason.summary()}. {report.message}",
                reason.action + (f" From the command line: {command}" if command else ""))


def _warn_if_secret_expires(service: Broker, credential, now: datetime, warn_days: int) -> None:
    """An own-app credential whose client secret expires within `warn_days`: tell a human."""
    days = credential.days_until_secret_expiry(now)
    if days is not None and days <= warn_days:
        _notify(service, "secret-expiring", credential.id,
                f"The partner app's client secret expires in {max(days, 0)} days.",
                f"create a new client secret and save it with "
                f"`broker credentials edit {credential.id}`")


def _notify(service: Broker, kind: str, credential_id: str, message: str, action: str) -> None:
    service.notify(Event(kind=kind, credential_id=credential_id, message=message, action=action))


def _parse(body: str | bytes) -> RotationMessage | None:
    try:
        return RotationMessage.loads(body)
    except InvalidMessage:
        log.warning("dropped a queue message that is not a rotation request")
        return None
