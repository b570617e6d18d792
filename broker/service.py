"""The `Broker` facade: the one entry point the consent site, the Functions and the CLI use.

It wires the vault, the leases, Entra (through MSAL) and the notifier together, and holds the
credential life cycle rules that span them: registering writes a disabled placeholder, editing
the app or tenant asks for consent again (old token versions are disabled, never deleted), and
every write of a token version happens under the credential's lease.

Why a facade and not the collaborators themselves: adapters (`consent_web`, `function_app.py`,
`broker.cli`, `broker.runtime`, `broker.jobs`) depend on this one type, so a web unit test swaps
one object (`FakeBroker`, held to this class by a contract test) and the import contracts can
forbid adapters the plumbing modules. Its methods that write drop the cached listing, which is
why even the one-line ones (`rotate`, `validate`, `finish_consent`...) must be called here and
not on a collaborator. The collaborators stay attributes for tests that inspect the vault.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Literal

from broker.consent import Consent, ConsentResult, ConsentStart
from broker.credentials import (
    Credential,
    CredentialSpec,
    Reason,
    Source,
    Status,
    TokenVersion,
    reason_for,
    secret_expiry_instant,
)
from broker.errors import (
    AppMisconfigured,
    BrokerError,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.identity import Identity
from broker.importer import Importer
from broker.invites import Invite, Invites
from broker.logs import get_logger
from broker.notify import Event
from broker.rotation import (
    DueItem,
    RetryPolicy,
    RotationResult,
    RotationSummary,
    Rotator,
    action_text,
    status_message,
    status_tags,
)
from broker.validation import ValidationReport, Validator
from broker.vault import RemovedCredential

if TYPE_CHECKING:
    from broker.importer import ImportReport
    from broker.locks import Leases
    from broker.notify import Notifier
    from broker.settings import Settings
    from broker.vault import Vault

log = get_logger(__name__)

EDIT_LEASE_WAIT = 30.0  # an edit waits this long for a rotation of the same credential


Verified = Literal["verified", "needs-consent", "unverified", "consent-needed", "unchanged"]


@dataclass(frozen=True)
class EditResult:
    """An edit and what became of it: `verified` says whether a new client secret was proven
    with Entra ID (a redemption of the stored token) before the credential is called active.

    - verified: Entra ID accepted the new secret; the fresh token is the new current version
    - needs-consent: the secret is stored, but the grant itself is dead (an admin must consent)
    - unverified: the secret is stored, but Entra ID could not be asked (`message` says why)
    - consent-needed: the tenant or app changed; the credential waits for a new consent
    - unchanged: nothing that needs proving changed
    """

    credential: Credential
    verified: Verified
    message: str = ""


class _Listing:
    """The last vault listing, for readers that accept a few seconds of staleness.

    A listing is one vault request per 25 credentials, so a page that lists 1,000 of them under
    load would otherwise make 40 sequential requests per view. One listing is in flight at a
    time, and while it is, other callers get the previous one rather than wait; a write through
    the facade drops the cached listing, and one that was in flight during a write is not kept.
    """

    def __init__(self, fetch: Callable[[], list[Credential]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._entry: tuple[list[Credential] | None, float] = (None, 0.0)
        self._generation = 0

    def get(self, max_age: float) -> list[Credential]:
        if max_age <= 0:
            return self._fetch()
        value, at = self._entry
        if value is not None and monotonic() - at <= max_age:
            return value
        # another caller is refreshing: the previous listing now beats a fresh one in a second
        if not self._lock.acquire(blocking=value is None):
            return value
        try:
            value, at = self._entry
            if value is not None and monotonic() - at <= max_age:
                return value
            generation, started = self._generation, monotonic()
            value = self._fetch()
            if generation == self._generation:
                self._entry = (value, started)
            return value
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._generation += 1
        self._entry = (None, 0.0)


def _writes(method):
    """Facade methods that may change what a listing shows drop the cached listing."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            self._listing.invalidate()

    return wrapper


class Broker:
    """Everything an adapter may do with credentials (see the module docstring for why).

    Collaborators default to what the settings describe; tests pass their own (a recording
    notifier, a fast retry policy).
    """

    def __init__(self, settings: Settings | None = None, *, vault: Vault | None = None,
                 leases: Leases | None = None, notifier: Notifier | None = None,
                 identity: Identity | None = None, retry: RetryPolicy | None = None) -> None:
        if settings is None:
            from broker.settings import load_settings

            settings = load_settings()
        if vault is None:
            from broker.locks import pacer_from_settings
            from broker.vault import Vault

            vault = Vault(settings, pacer=pacer_from_settings(settings, settings.vault_url))
        if leases is None:
            from broker.locks import leases_from_settings

            leases = leases_from_settings(settings)
        if notifier is None:
            from broker.notify import Notifier

            notifier = Notifier(settings)
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.notifier = notifier
        self.identity = identity or Identity(settings, vault)
        self.invites = Invites(settings, vault)
        self.rotator = Rotator(settings, vault, leases, self.identity, notify=self.notify,
                               invites=self.invites, retry=retry)
        self.consent = Consent(settings, vault, leases, self.identity, self.invites)
        self.validator = Validator(settings, vault, leases, self.rotator)
        self.importer = Importer(settings, vault, leases, self.identity,
                                 retrying=self.rotator.retrying, register=self.add_credential)
        self._listing = _Listing(self.vault.list_credentials)

    # -- reading -------------------------------------------------------------------------------

    def list_credentials(self, environment: str | None = None, *,
                         max_age: float = 0.0) -> list[Credential]:
        """One listing of the vault (no values read), optionally one environment only;
        `max_age` > 0 accepts a listing up to that many seconds old (writes made through this
        Broker always show at once)."""
        found = self._listing.get(max_age)
        if environment is not None:
            found = [c for c in found if c.environment == environment]
        return found

    def get_credential(self, credential_id: str) -> Credential:
        return self.vault.get_credential(credential_id)

    def versions(self, credential_id: str) -> list[TokenVersion]:
        """Every version, newest first: a listing of 25 a page (exports; pages use
        `versions_page`)."""
        return self.vault.versions(credential_id)

    def versions_page(self, credential_id: str, *, page_size: int = 25,
                      continuation: str | None = None) -> tuple[list[TokenVersion], str | None]:
        """One page of versions and the continuation for the next: one vault request."""
        return self.vault.versions_page(credential_id, page_size=page_size,
                                        continuation=continuation)

    def status_counts(self) -> dict[str, int]:
        """Credentials per status (dates applied), every status present; no values read."""
        now = datetime.now(UTC)
        counts = {status.value: 0 for status in Status}
        for credential in self.vault.list_credentials():
            counts[credential.status(now, self.settings.warn_days).value] += 1
        return counts

    # -- registering -----------------------------------------------------------------------------

    @_writes
    def add_credential(self, spec: CredentialSpec) -> Credential:
        """Register a credential: its client secret (own app) and a pending-consent placeholder."""
        now = datetime.now(UTC)
        spec = spec.validated(now=now)
        if self._exists(spec.id):
            raise InvalidInput(errors={"id": f"A credential with id {spec.id!r} exists already."})
        # no lease: nothing rotates a credential that does not exist yet, and callers such as
        # the importer already hold it (leases are not re-entrant)
        if spec.client_id:
            self.vault.write_client_secret(spec.id, spec.client_secret,
                                           secret_expiry_instant(spec.secret_expires_on))
        self.vault.create_placeholder(spec, now=now)
        log.info("credential %s registered (pending consent)", spec.id)
        return self.vault.get_credential(spec.id)

    def edit_credential(self, credential_id: str, spec: CredentialSpec) -> Credential:
        """`edit`, for callers that need only the credential as it now is."""
        return self.edit(credential_id, spec).credential

    @_writes
    def edit(self, credential_id: str, spec: CredentialSpec) -> EditResult:
        """Change a credential's fields.

        A new app or tenant invalidates the consent: every token version is disabled (kept for
        the record, never deleted) and a new placeholder makes the credential pending-consent
        again. A new client secret for the same app is proven first, by redeeming the stored
        token with it: a secret Entra ID refuses is InvalidInput and nothing is saved, so an
        edit never reports a credential active that the next rotation would find broken.
        """
        existing = self.vault.get_credential(credential_id)
        now = datetime.now(UTC)
        spec = spec.validated(now=now, existing=existing)
        app_changed = (spec.tenant_id != existing.tenant_id
                       or (spec.client_id or None) != (existing.client_id or None))
        with self.leases.hold(credential_id, wait=EDIT_LEASE_WAIT) as held:
            existing = self.vault.get_credential(credential_id)
            if app_changed:
                if spec.client_id and spec.client_secret:
                    self.vault.write_client_secret(credential_id, spec.client_secret,
                                                   secret_expiry_instant(spec.secret_expires_on))
                for version in self.vault.versions(credential_id):
                    if version.enabled:
                        self.vault.set_enabled(credential_id, version.version, False)
                self.vault.create_placeholder(spec, now=now,
                                              reason=Reason("app-changed", now, "edit"))
                log.info("credential %s changed app or tenant: consent needed again",
                         credential_id)
                return EditResult(self.vault.get_credential(credential_id), "consent-needed")
            verified: Verified = "unchanged"
            message = ""
            if spec.client_id and spec.client_secret:
                verified, message = self._new_client_secret(existing, spec, held)
            latest = self.vault.latest_version(credential_id)
            changes = {k: getattr(spec, k) for k in ("environment", "product", "marketplace")
                       if getattr(spec, k) != getattr(existing, k)}
            if changes:
                self.vault.update_tags(credential_id, latest.version, **changes)
        return EditResult(self.vault.get_credential(credential_id), verified, message)

    def _new_client_secret(self, existing: Credential, spec: CredentialSpec, held
                           ) -> tuple[Verified, str]:
        """Prove a partner app's new client secret, then store it. Call with the lease."""
        current = self.vault.current(existing.id)
        latest = current.version
        expires = secret_expiry_instant(spec.secret_expires_on)
        if latest is None or latest.is_placeholder or not latest.enabled:
            # no token to redeem yet: the consent that follows proves the secret
            self.vault.write_client_secret(existing.id, spec.client_secret, expires)
            return "unchanged", ""
        try:
            self.rotator.renew(existing, current, source=Source.ROTATION, held=held,
                               client_secret=spec.client_secret, release=False)
        except AppMisconfigured as exc:
            reason = reason_for(exc, by="edit", at=datetime.now(UTC))
            raise InvalidInput(errors={"client_secret": (
                f"Entra ID refused this client secret: {reason.summary()}. {reason.action} "
                "Nothing was saved.")}) from None
        except NeedsConsent as exc:
            self.vault.write_client_secret(existing.id, spec.client_secret, expires)
            reason = reason_for(exc, by="edit", at=datetime.now(UTC))
            self.vault.update_tags(existing.id, latest.version,
                                   **status_tags(Status.NEEDS_CONSENT, reason))
            return "needs-consent", status_message(existing.id, Status.NEEDS_CONSENT, reason) \
                + " " + action_text(existing.id, reason)
        except (TransientFailure, BrokerError) as exc:
            self.vault.write_client_secret(existing.id, spec.client_secret, expires)
            return "unverified", (f"The new client secret is stored but could not be checked: "
                                  f"{exc} Validate the credential when Entra ID answers again.")
        self.vault.write_client_secret(existing.id, spec.client_secret, expires)
        log.info("credential %s: new client secret verified and stored", existing.id)
        return "verified", ("Entra ID accepted the new client secret and renewed the token; "
                            "it is stored as the current version.")

    @_writes
    def remove_credential(self, credential_id: str) -> None:
        """Soft-delete the credential's secrets (recoverable for the vault's retention period)."""
        self.vault.get_credential(credential_id)
        with self.leases.hold(credential_id, wait=EDIT_LEASE_WAIT):
            self.vault.delete_credential(credential_id)

    def removed_credentials(self) -> list[RemovedCredential]:
        """Credentials removed and still recoverable (soft-deleted `rt-<id>`), newest first."""
        return self.vault.removed_credentials()

    def removed_credential(self, credential_id: str) -> RemovedCredential:
        return self.vault.removed_credential(credential_id)

    @_writes
    def recover_credential(self, credential_id: str) -> Credential:
        """Undo a removal: recover `rt-<id>` (and `cs-<id>`) with every version and tag."""
        self.vault.recover_credential(credential_id)
        log.info("credential %s recovered", credential_id)
        return self.vault.get_credential(credential_id)

    @_writes
    def purge_credential(self, credential_id: str) -> None:
        """Delete a removed credential for good, freeing its id; InvalidInput where the vault's
        purge protection forbids it (production vaults), saying when Key Vault will."""
        self.vault.purge_credential(credential_id)
        log.info("credential %s purged", credential_id)

    def _exists(self, credential_id: str) -> bool:
        try:
            self.vault.current(credential_id)
        except CredentialNotFound:
            return False
        return True

    # -- consent ---------------------------------------------------------------------------------

    def begin_consent(self, credential_id: str, redirect_uri: str, *,
                      prompt_consent: bool = False, scopes: Sequence[str] | None = None,
                      invite_token: str | None = None) -> ConsentStart:
        return self.consent.begin(credential_id, redirect_uri, prompt_consent=prompt_consent,
                                  scopes=scopes, invite_token=invite_token)

    @_writes
    def finish_consent(self, flow: dict, params: Mapping[str, str]) -> ConsentResult:
        return self.consent.finish(flow, params)

    @_writes
    def create_invite(self, credential_id: str, ttl_hours: float | None = None) -> Invite:
        return self.invites.create(credential_id, ttl_hours)

    def open_invite(self, token: str) -> Credential:
        return self.invites.open(token)

    def current_invite(self, credential: Credential) -> Invite | None:
        """The credential's open, unexpired invite (its link signed again), if there is one."""
        return self.invites.open_invite(credential)

    # -- rotation --------------------------------------------------------------------------------

    @_writes
    def rotate(self, credential_id: str, *, expected_version: str | None = None,
               wait: float = 0.0, older_than: datetime | None = None) -> RotationResult:
        return self.rotator.rotate(credential_id, expected_version=expected_version, wait=wait,
                                   older_than=older_than)

    def due(self, now: datetime | None = None) -> list[DueItem]:
        return self.rotator.due(now)

    @_writes
    def rotate_due(self, now: datetime | None = None, *,
                   progress: Callable[[RotationResult], None] | None = None) -> RotationSummary:
        """Rotate tonight's share now (the delays of `due` are for the queue, not for this)."""
        items = self.rotator.due(now)
        return self.rotator.rotate_many(((i.credential_id, i.version) for i in items),
                                        progress=progress)

    @_writes
    def rotate_many(self, credential_ids: Iterable[str], *,
                    progress: Callable[[RotationResult], None] | None = None) -> RotationSummary:
        return self.rotator.rotate_many(((cid, None) for cid in credential_ids),
                                        progress=progress)

    @_writes
    def mark_error(self, credential_id: str, message: str) -> None:
        """Flag a credential as in error (for example a poisoned rotation message) and notify."""
        latest = self.vault.latest_version(credential_id)
        reason = Reason("rotation-failed", datetime.now(UTC), "worker")
        self.vault.update_tags(credential_id, latest.version, base=latest,
                               **status_tags(Status.ERROR, reason))
        self.notify(Event(kind="error", credential_id=credential_id,
                          message=f"{status_message(credential_id, Status.ERROR, reason)} "
                                  f"{message}",
                          action=action_text(credential_id, reason)))

    # -- validation and import ---------------------------------------------------------------

    @_writes
    def validate(self, credential_id: str) -> ValidationReport:
        return self.validator.validate(credential_id)

    @_writes
    def import_file(self, path: Path) -> ImportReport:
        return self.importer.import_file(Path(path))

    # -- notifications ---------------------------------------------------------------------------

    @property
    def notifications_enabled(self) -> bool:
        """Whether `notify` reaches anyone (a webhook, or SMTP with recipients)."""
        return bool(getattr(self.notifier, "enabled", False))

    @property
    def email_enabled(self) -> bool:
        """Whether `email` can send at all (BROKER_SMTP_URL is set; the recipient may be given)."""
        return bool(getattr(self.notifier, "smtp_url", None))

    def notify(self, event: Event) -> None:
        """Tell a human; a notifier that fails must never fail the operation that called it."""
        try:
            self.notifier.notify(event)
        except Exception as exc:  # notifications are best effort by contract
            log.warning("notification %s for %s failed: %s", event.kind, event.credential_id,
                        type(exc).__name__)

    def email(self, event: Event, to: list[str] | None = None) -> bool:
        """Email `event` to `to` (default BROKER_NOTIFY_EMAIL) only; True once the server took
        it. For callers that must tell a person whether the mail went out."""
        return self.notifier.email(event, to)
