"""Validation: prove a credential works end to end, the way its consumers will use it.

Validation writes no version (ARCHITECTURE.md: a new version only for a new token obtained by
consent, rotation or import). It redeems the current token to prove it works; Entra hands back a
new refresh token too, which is dropped: the stored one stays valid until its own expiry, and
rotation renews it when it is due. The result goes on the current version's tags (one PATCH),
under the lease so that it cannot race a rotation's or a status change's tag write. Then the
access token must carry `mfa` in `amr` (Partner Center refuses tokens without it) and Partner
Center must answer `GET /v1/profiles/organization`. Every expected failure becomes a report with
ok=False and a message that says what to do; nothing here raises for those.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from broker.credentials import Check, Reason, Status, TokenVersion
from broker.errors import (
    AppMisconfigured,
    BrokerError,
    Conflict,
    NeedsConsent,
    TransientFailure,
)
from broker.logs import bound, correlation_id, get_logger
from broker.rotation import status_tags

log = get_logger(__name__)

TIMEOUT = (5.0, 20.0)
LEASE_WAIT = 15.0


@dataclass(frozen=True)
class ValidationReport:
    credential_id: str
    ok: bool
    checked_at: datetime
    version: str | None
    mfa: bool
    organization: str | None
    message: str
    result: str = ""  # the `validation` tag recorded: ok, no-mfa, partner-center, unavailable...


class Validator:
    def __init__(self, settings, vault, leases, rotator, identity=None) -> None:
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.rotator = rotator
        self.identity = identity or rotator.identity
        self.session = requests.Session()
        self.lease_wait = LEASE_WAIT

    def validate(self, credential_id: str) -> ValidationReport:
        """CredentialNotFound for an unknown id; otherwise always a report."""
        with bound(credential=credential_id):
            return self._validate(credential_id)

    def _validate(self, credential_id: str) -> ValidationReport:
        checked_at = datetime.now(UTC)
        with ExitStack() as stack:
            try:
                stack.enter_context(self.leases.hold(credential_id, wait=self.lease_wait))
            except Conflict:
                return ValidationReport(
                    credential_id, False, checked_at, None, False, None,
                    "Another operation is writing this credential; validate again shortly.",
                    "busy")
            return self._validate_held(credential_id, checked_at)

    def _validate_held(self, credential_id: str, checked_at: datetime) -> ValidationReport:
        try:
            current = self.rotator.retrying(lambda: self.vault.current(credential_id))
        except TransientFailure as exc:
            return ValidationReport(credential_id, False, checked_at, None, False, None,
                                    f"{exc} Nothing was changed.", "unavailable")
        latest = current.version
        credential = self.vault.credential_of(credential_id, latest, secret_expiry=False)

        def report(ok: bool, message: str, tag: str, *, mfa=False, organization=None,
                   status: Status | None = None) -> ValidationReport:
            self._record(credential_id, latest, checked_at, tag, status)
            return ValidationReport(credential_id, ok, checked_at, latest.version, mfa,
                                    organization, message, tag)

        if current.value is None or latest.is_placeholder or not latest.enabled:
            return ValidationReport(credential_id, False, checked_at, None, False, None,
                                    "Not consented yet: an admin must consent first.",
                                    "pending-consent")
        try:
            # the new refresh token Entra returns is not stored: the stored one stays valid
            # until its own expiry, and rotation renews it when due
            redemption = self.rotator.retrying(
                lambda: self.identity.redeem(credential, current.value))
        except (NeedsConsent, AppMisconfigured) as exc:
            outcome = self.rotator.record_failure(credential, latest, exc, by="validation",
                                                  validated_at=checked_at)
            return ValidationReport(credential_id, False, checked_at, latest.version, False,
                                    None, f"{exc} {exc.hint}", outcome)
        except TransientFailure as exc:
            return report(False, f"{exc} Nothing was changed.", "unavailable")
        except BrokerError as exc:
            return report(False, str(exc), "error")
        mfa = "mfa" in (redemption.claims.get("amr") or [])
        if not mfa:
            return report(False, "The access token does not show multi-factor authentication: "
                                 "an admin must consent again, signing in with MFA.", "no-mfa",
                          status=Status.NEEDS_CONSENT)
        ok, organization, message, refused = self._partner_center(redemption.access_token)
        return report(ok, message, "ok" if ok else "partner-center", mfa=True,
                      organization=organization, status=Status.ERROR if refused else None)

    def _partner_center(self, access_token: str) -> tuple[bool, str | None, str, bool]:
        """(ok, organization, message, refused): refused is Partner Center saying no to the
        token itself (401/403), as opposed to being unreachable or failing."""
        url = f"{self.settings.partner_center_url.rstrip('/')}/v1/profiles/organization"
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "MS-CorrelationId": correlation_id.get() or str(uuid.uuid4()),
            "MS-RequestId": str(uuid.uuid4()),
        }
        try:
            response = self.session.get(url, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            return False, None, (f"Partner Center at {url} could not be reached "
                                 f"({type(exc).__name__}); validate again later."), False
        if response.status_code != 200:
            return False, None, (
                f"Partner Center refused the token (HTTP {response.status_code}, correlation "
                f"id {headers['MS-CorrelationId']})."), response.status_code in (401, 403)
        try:
            body = response.json()
        except ValueError:
            body = {}
        organization = None
        if isinstance(body, dict):
            organization = body.get("companyName") or body.get("name") or body.get("id")
        name = f" as {organization}" if organization else ""
        return True, organization, f"Valid: Partner Center answered{name}.", False

    def _record(self, credential_id: str, version: TokenVersion, checked_at: datetime,
                result: str, status: Status | None = None) -> None:
        """Tag the version checked (one PATCH, its tags already in hand; and, for a failure
        that needs a human, its status and the reason); a failure to tag must not hide the
        report itself."""
        changes = Check(result, checked_at).tag_changes()
        if status is not None:
            changes.update(status_tags(status, Reason(result, checked_at, "validation")))
        try:
            self.vault.update_tags(credential_id, version.version, base=version, **changes)
        except BrokerError as exc:
            log.warning("could not record validation of %s: %s", credential_id, exc)
