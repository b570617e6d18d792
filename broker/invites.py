"""Invite links: let an admin elsewhere complete consent without anyone copying a code by hand.

A link is signed with `settings.secret_key`, expires, is bound to one credential and works once.
"Once" needs state, and Key Vault is the only datastore: the invite's random id and expiry are
kept as the `invite` tag of the credential's latest version, and a consent that completes
through the link writes a new latest version without it. A newer invite replaces the tag, so
only the most recent link of a credential is ever open; the broker's own automatic invites
(a rotation that finds the grant dead) reuse the open link instead, so that the one an operator
already sent keeps working. The link is a deterministic signature of (credential, id, expiry),
so the tag is all it takes to hand the same link out again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from broker.credentials import INVITE_TAG
from broker.errors import ConsentFailed, CredentialNotFound, InvalidInput

SALT = "broker.invite.v1"


@dataclass(frozen=True)
class Invite:
    url: str
    credential_id: str
    expires_at: datetime
    reused: bool = False  # the link already open for this credential, handed out again


def invite_tag(invite_id: str, expires_at: datetime) -> str:
    return f"{invite_id} {int(expires_at.timestamp())}"


def parse_invite_tag(value: str | None) -> tuple[str, datetime | None] | None:
    """(invite id, expiry) from the tag; older tags hold the id alone (expiry unknown)."""
    parts = (value or "").split()
    if not parts:
        return None
    expires_at = None
    if len(parts) > 1 and parts[1].isdigit():
        expires_at = datetime.fromtimestamp(int(parts[1]), UTC)
    return parts[0], expires_at


@dataclass(frozen=True)
class InviteClaim:
    """A verified link: which credential it opens and which invite id it carries."""

    credential_id: str
    invite_id: str
    expires_at: datetime


def _invalid(why: str) -> ConsentFailed:
    return ConsentFailed(
        "invite-invalid",
        f"This consent link is not valid: {why}.",
        hint="ask the person who sent it for a new link",
    )


class Invites:
    def __init__(self, settings, vault) -> None:
        self.settings = settings
        self.vault = vault
        self._serializer = URLSafeSerializer(settings.secret_key, salt=SALT)

    def create(self, credential_id: str, ttl_hours: float | None = None, *,
               now: datetime | None = None, reuse_open: bool = False) -> Invite:
        """Open a new invite for the credential (closing any earlier one) and sign its link;
        with `reuse_open`, the invite still open (and not expiring within the hour) instead."""
        now = now or datetime.now(UTC)
        ttl = self.settings.invite_ttl_hours if ttl_hours is None else float(ttl_hours)
        if ttl <= 0:
            raise InvalidInput("The invite lifetime must be positive.",
                               errors={"ttl_hours": "must be greater than 0"})
        credential = self.vault.get_credential(credential_id)
        if credential.latest is None:
            raise CredentialNotFound(credential_id)
        if reuse_open:
            open_invite = self.open_invite(credential, now=now)
            if open_invite is not None and open_invite.expires_at - now >= timedelta(hours=1):
                return open_invite
        invite_id = secrets.token_urlsafe(16)
        expires_at = datetime.fromtimestamp(int((now + timedelta(hours=ttl)).timestamp()), UTC)
        self.vault.update_tags(credential_id, credential.latest.version, base=credential.latest,
                               **{INVITE_TAG: invite_tag(invite_id, expires_at)})
        return Invite(url=self._url(credential_id, invite_id, expires_at),
                      credential_id=credential_id, expires_at=expires_at)

    def open_invite(self, credential, *, now: datetime | None = None) -> Invite | None:
        """The credential's open, unexpired invite (its link signed again), if there is one."""
        latest = credential.latest
        parsed = parse_invite_tag(latest.tags.get(INVITE_TAG) if latest else None)
        if parsed is None or parsed[1] is None or parsed[1] <= (now or datetime.now(UTC)):
            return None
        invite_id, expires_at = parsed
        return Invite(url=self._url(credential.id, invite_id, expires_at),
                      credential_id=credential.id, expires_at=expires_at, reused=True)

    def _url(self, credential_id: str, invite_id: str, expires_at: datetime) -> str:
        token = self._serializer.dumps(
            {"c": credential_id, "i": invite_id, "e": int(expires_at.timestamp())})
        return f"{self.settings.public_url.rstrip('/')}/invite/{token}"

    def verify(self, token: str, *, now: datetime | None = None) -> InviteClaim:
        """Signature and expiry only (no vault call); ConsentFailed(invite-invalid) otherwise."""
        now = now or datetime.now(UTC)
        try:
            data = self._serializer.loads(token)
        except (BadSignature, UnicodeError):  # a forged link may not even encode
            raise _invalid("it was not issued by this broker or has been altered") from None
        if not isinstance(data, dict) or not {"c", "i", "e"} <= data.keys():
            raise _invalid("it is malformed")
        expires_at = datetime.fromtimestamp(int(data["e"]), UTC)
        if now >= expires_at:
            raise _invalid("it has expired")
        return InviteClaim(str(data["c"]), str(data["i"]), expires_at)

    def open(self, token: str, *, credential_id: str | None = None,
             now: datetime | None = None):
        """The credential the link opens, if it is still the credential's one open invite."""
        claim = self.verify(token, now=now)
        if credential_id is not None and claim.credential_id != credential_id:
            raise _invalid("it belongs to another credential")
        credential = self.check_open(claim.credential_id, claim.invite_id)
        return credential

    def check_open(self, credential_id: str, invite_id: str):
        """The credential, if `invite_id` is still open on its latest version."""
        try:
            credential = self.vault.get_credential(credential_id)
        except CredentialNotFound:
            raise _invalid("its credential no longer exists") from None
        latest = credential.latest
        parsed = parse_invite_tag(latest.tags.get(INVITE_TAG) if latest else None)
        if parsed is None or parsed[0] != invite_id:
            raise _invalid("it has already been used or replaced by a newer link")
        return credential
