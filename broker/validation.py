"""Validation: prove a credential works end to end, the way its consumers will use it.

Redeeming is itself a renewal (Entra hands back a new refresh token), so the fresh token is
stored as the next version under the lease, exactly as a rotation would. Then the access token
must carry `mfa` in `amr` (Partner Center refuses tokens without it) and Partner Center must
answer `GET /v1/profiles/organization`. Every expected failure becomes a report with ok=False
and a message that says what to do; nothing here raises for those.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from broker.credentials import Check, Reason, Source, Status
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


class Validator:
    def __init__(self, settings, vault, leases, rotator) -> None:
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.rotator = rotator
        self.session = requests.Session()
        self.lease_wait = LEASE_WAIT

    def validate(self, credential_id: str) -> ValidationReport:
        """CredentialNotFound for an unknown id; otherwise always a report."""
        with bound(credential=credential_id):
            return self._validate(credential_id)

    def _validate(self, credential_id: str) -> ValidationReport:
        checked_at = datetime.now(UTC)
        credential = self.vault.get_credential(credential_id)
        latest = credential.latest

        def report(ok: bool, message: str, tag: str, *, version=None, mfa=False,
                   organization=None, status: Status | None = None) -> ValidationReport:
            self._record(credential_id, version or (latest.version if latest else None),
                         checked_at, tag, status)
            return ValidationReport(credential_id, ok, checked_at,
                                    version or (latest.version if latest else None), mfa,
                                    organization, message)

        if latest is None or latest.is_placeholder or not latest.enabled:
            return ValidationReport(credential_id, False, checked_at, None, False, None,
                                    "Not consented yet: an admin must consent first.")
        with ExitStack() as stack:
            try:
                stack.enter_context(self.leases.hold(credential_id, wait=self.lease_wait))
            except Conflict:
                return ValidationReport(
                    credential_id, False, checked_at, latest.version, False, None,
                    "Another operation is writing this credential; validate again shortly.")
            credential = self.vault.get_credential(credential_id)
            latest = credential.latest
            try:
                new, redemption = self.rotator.renew(credential, latest, source=Source.ROTATION)
            except (NeedsConsent, AppMisconfigured) as exc:
                outcome = self.rotator.record_failure(credential, latest, exc, by="validation")
                return report(False, f"{exc} {exc.hint}", outcome)
            except Conflict as exc:
                return ValidationReport(credential_id, False, checked_at, latest.version,
                                        False, None, str(exc))
            except TransientFailure as exc:
                return report(False, f"{exc} Nothing was changed.", "unavailable")
            except BrokerError as exc:
                return report(False, str(exc), "error")
        version = new.version
        mfa = "mfa" in (redemption.claims.get("amr") or [])
        if not mfa:
            return report(False, "The access token does not show multi-factor authentication: "
                                 "an admin must consent again, signing in with MFA.", "no-mfa",
                          version=version, status=Status.NEEDS_CONSENT)
        ok, organization, message, refused = self._partner_center(redemption.access_token)
        return report(ok, message, "ok" if ok else "partner-center", version=version, mfa=True,
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

    def _record(self, credential_id: str, version: str | None, checked_at: datetime,
                result: str, status: Status | None = None) -> None:
        """Tag the version checked (and, for a failure that needs a human, its status and the
        reason); a failure to tag must not hide the report itself."""
        if not version:
            return
        changes = Check(result, checked_at).tag_changes()
        if status is not None:
            changes.update(status_tags(status, Reason(result, checked_at, "validation")))
        try:
            self.vault.update_tags(credential_id, version, **changes)
        except BrokerError as exc:
            log.warning("could not record validation of %s: %s", credential_id, exc)
