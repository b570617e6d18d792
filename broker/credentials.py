"""Credentials as operators type them (`CredentialSpec`) and as Key Vault holds them.

The vault is the only datastore, so `TokenVersion` and `Credential` are read-only views built
from secret *properties* (tags and attributes); they never carry a token value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from broker.errors import InvalidInput
from broker.reasons import Explanation, explain, is_code

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
ENVIRONMENTS = ("test", "production")
CPV = "cpv"  # the client_id tag of a credential using the CPV's own app
RT_PREFIX, CS_PREFIX = "rt-", "cs-"
PLACEHOLDER_VALUE = "pending-consent"  # the disabled version of a credential not consented yet
MAX_TEXT = 64

_SLUG = re.compile(SLUG)
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)+[a-z][a-z0-9-]*[a-z0-9]$")


def is_credential_id(text: object) -> bool:
    """fullmatch: `$` alone would let a trailing newline through."""
    return isinstance(text, str) and _SLUG.fullmatch(text) is not None


class Status(StrEnum):
    PENDING_CONSENT = "pending-consent"
    ACTIVE = "active"
    EXPIRING = "expiring"
    NEEDS_CONSENT = "needs-consent"
    ERROR = "error"


# The broker's bookkeeping tags beyond the contract's eleven: Key Vault allows 15 tags, so these
# four are all there is room for. Their formats live here, in one place, for every writer.
ROLES_TAG = "roles"            # "Global Administrator,Admin Agent"
VALIDATION_TAG = "validation"  # the last validation: "<result> <ISO instant>" (see `Check`)
INVITE_TAG = "invite"          # the one open invite: "<invite id> <expiry, epoch seconds>"
REASON_TAG = "reason"          # why the status is not active: "<code> <ISO instant> <by>"
LEGACY_VALIDATED_AT = "validated_at"  # older versions kept the validation's time apart


class Source(StrEnum):
    CONSENT = "consent"
    ROTATION = "rotation"
    IMPORT = "import"


MESSAGES = {
    "id": "Use 1 to 63 lowercase letters, digits and hyphens, starting with a letter or digit.",
    "environment": "Choose test or production.",
    "product": f"Enter the product: 1 to {MAX_TEXT} printable characters.",
    "marketplace": f"Enter the marketplace: 1 to {MAX_TEXT} printable characters.",
    "tenant_id": "Enter the partner tenant as a GUID or a domain such as contoso.onmicrosoft.com.",
    "client_id": "Enter the app's client id as a GUID, or leave it blank to use the CPV app.",
    "client_secret": "Enter the app's client secret.",
    "client_secret_cpv": "Leave the client secret blank when using the CPV app (no client id).",
    "secret_expires_on": "Enter the date the client secret expires.",
    "secret_expires_on_past": "The client secret's expiry date must be in the future.",
    "secret_expires_on_format": "Enter the expiry as a date such as 2030-12-31.",
    "secret_expires_on_cpv": "Leave the expiry blank when using the CPV app (no client id).",
}


def secret_expiry_instant(expires_on: date | None) -> datetime:
    """A client secret's expiry date as the instant stored on `cs-<id>`: the end of that day,
    UTC (a secret valid "until 2026-06-30" works all of that day)."""
    if expires_on is None:
        raise InvalidInput(errors={"secret_expires_on": "Enter the date the client secret "
                                                        "expires."})
    return datetime.combine(expires_on, time(23, 59, 59), tzinfo=UTC)


def latest_secret_id(secret_id: str) -> str:
    """`https://<vault>/secrets/rt-<id>`, what consumers resolve, from the identifier of one
    version (parsed by the SDK's KeyVaultSecretIdentifier, held to what Key Vault issues)."""
    from broker.vault import parse_secret_id

    parsed = parse_secret_id(secret_id)
    return f"{parsed.vault_url.rstrip('/')}/secrets/{parsed.name}"


def is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _text_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_TEXT and value.isprintable()


def _clean(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_date(value: Any) -> date | None:
    """A date from a form, CSV cell or JSON value; InvalidInput when it is not one."""
    if isinstance(value, datetime):
        return value.date()
    if value is None or isinstance(value, date):
        return value
    text = _clean(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise InvalidInput(errors={"secret_expires_on": MESSAGES["secret_expires_on_format"]}) \
            from None


@dataclass(frozen=True)
class CredentialSpec:
    """What an operator types to register or edit a credential (form, CSV row, JSON)."""

    id: str
    environment: str
    product: str
    marketplace: str
    tenant_id: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    secret_expires_on: date | None = None

    @property
    def is_cpv(self) -> bool:
        return not self.client_id

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CredentialSpec:
        """Unknown keys (such as an import row's `refresh_token`) are ignored."""
        return cls(
            id=_clean(data.get("id")),
            environment=_clean(data.get("environment")),
            product=_clean(data.get("product")),
            marketplace=_clean(data.get("marketplace")),
            tenant_id=_clean(data.get("tenant_id")),
            client_id=_clean(data.get("client_id")) or None,
            client_secret=_clean(data.get("client_secret")) or None,
            secret_expires_on=parse_date(data.get("secret_expires_on")),
        )

    def validated(self, *, now: datetime, existing: Credential | None = None) -> CredentialSpec:
        """A normalised copy, or InvalidInput naming every bad field at once.

        On an edit (`existing` given) a blank client secret keeps the stored one, unless the
        credential is switching from the CPV app to its own app.
        """
        errors: dict[str, str] = {}
        ident = _clean(self.id).lower() if existing is None else existing.id
        if not is_credential_id(ident):
            errors["id"] = MESSAGES["id"]
        environment = _clean(self.environment).lower()
        if environment not in ENVIRONMENTS:
            errors["environment"] = MESSAGES["environment"]
        product, marketplace = _clean(self.product), _clean(self.marketplace)
        if not _text_ok(product):
            errors["product"] = MESSAGES["product"]
        if not _text_ok(marketplace):
            errors["marketplace"] = MESSAGES["marketplace"]
        tenant_id = _clean(self.tenant_id).lower()
        if not (is_guid(tenant_id) or _DOMAIN.match(tenant_id)):
            errors["tenant_id"] = MESSAGES["tenant_id"]
        client_id = _clean(self.client_id).lower() or None
        secret = self.client_secret.strip() if self.client_secret else None
        expires = self.secret_expires_on
        if client_id is None:
            if secret:
                errors["client_secret"] = MESSAGES["client_secret_cpv"]
            if expires:
                errors["secret_expires_on"] = MESSAGES["secret_expires_on_cpv"]
        else:
            if not is_guid(client_id):
                errors["client_id"] = MESSAGES["client_id"]
            # a blank secret keeps the stored one only while the app stays the same
            keeps_secret = existing is not None and existing.client_id == client_id
            if not secret and not keeps_secret:
                errors["client_secret"] = MESSAGES["client_secret"]
            if expires is None and not (keeps_secret and not secret):
                errors["secret_expires_on"] = MESSAGES["secret_expires_on"]
            elif expires is not None and expires <= now.astimezone(UTC).date():
                errors["secret_expires_on"] = MESSAGES["secret_expires_on_past"]
        if errors:
            raise InvalidInput(errors=errors)
        return replace(self, id=ident, environment=environment, product=product,
                       marketplace=marketplace, tenant_id=tenant_id, client_id=client_id,
                       client_secret=secret or None, secret_expires_on=expires)


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_instant(value: datetime) -> str:
    """ISO 8601 UTC with microseconds: the `obtained_at` format that orders versions."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _short_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Check:
    """The last validation of a version: its result slug and when it ran (`validation` tag)."""

    result: str
    at: datetime | None

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def tag(self) -> str:
        at = _short_instant(self.at) if self.at else ""
        return f"{self.result[:64]} {at}".strip()

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Check | None:
        """Reads `"<result> <instant>"`, and the older pair of `validation` + `validated_at`."""
        value = (tags.get(VALIDATION_TAG) or "").strip()
        if not value:
            return None
        result, _, at = value.partition(" ")
        return cls(result, _instant(at) or _instant(tags.get(LEGACY_VALIDATED_AT)))

    def tag_changes(self) -> dict[str, str | None]:
        """The tag updates that record this check (folding away the older separate tag)."""
        return {VALIDATION_TAG: self.tag(), LEGACY_VALIDATED_AT: None}


BY = ("rotation", "validation", "edit", "consent", "worker", "import")


@dataclass(frozen=True)
class Reason:
    """Why a credential's status is not active: a code (an AADSTS code or one of the broker's
    names in `broker.reasons`), when it was found or when a date runs out, and what found it.

    Stored as the `reason` tag of the current version ("AADSTS7000222 2026-12-06T17:40:03Z
    rotation"); the words and the action come from `broker.reasons` when it is shown.
    """

    code: str
    at: datetime | None = None
    by: str | None = None  # one of BY; None for reasons derived from dates
    needs_consent: bool = False  # how to read an AADSTS code we have no words for

    def tag(self) -> str:
        parts = [self.code, _short_instant(self.at) if self.at else "-", self.by or "-"]
        return " ".join(parts)[:256]

    @classmethod
    def from_tag(cls, value: str | None, *, needs_consent: bool = False) -> Reason | None:
        parts = (value or "").split()
        if not 1 <= len(parts) <= 3 or not is_code(parts[0]):
            return None
        at = None
        if len(parts) > 1 and parts[1] != "-":
            at = _instant(parts[1])
            if at is None:
                return None
        by = parts[2] if len(parts) > 2 and parts[2] in BY else None
        return cls(parts[0], at, by, needs_consent)

    @property
    def explanation(self) -> Explanation:
        return explain(self.code, needs_consent=self.needs_consent)

    @property
    def meaning(self) -> str:
        return self.explanation.meaning

    @property
    def action(self) -> str:
        return self.explanation.action

    def command(self, credential_id: str) -> str | None:
        template = self.explanation.command
        return template.format(id=credential_id) if template else None

    @property
    def remedy(self) -> str:
        """The kind of step that fixes it, for adapters that offer a button: "consent",
        "edit", "rotate", "validate" or "" (read off the CLI command)."""
        command = self.explanation.command or ""
        for needle, remedy in (("broker invite", "consent"), ("credentials edit", "edit"),
                               ("broker rotate", "rotate"), ("broker validate", "validate")):
            if needle in command:
                return remedy
        return ""

    @property
    def derived(self) -> bool:
        """Read off a date (an expiry) rather than found by a check."""
        return self.by is None

    @property
    def when(self) -> str:
        """"found by rotation on 2026-12-06 17:40 UTC", or the date a derived reason is about."""
        if self.at is None:
            return ""
        if self.derived:
            verb = "expires" if self.code.endswith("expiring") else "since"
            if self.code == "not-consented":
                verb = "registered"
            return f"{verb} {human_instant(self.at)}"
        return f"found by {self.by} on {human_instant(self.at)}"

    @property
    def label(self) -> str:
        """The code as shown next to the meaning: AADSTS codes as they are, ours in words."""
        return self.code if self.code.startswith("AADSTS") else ""

    def summary(self) -> str:
        """One line: "AADSTS50173: the grant was revoked (…), found by rotation on …"."""
        text = f"{self.label}: {self.meaning}" if self.label else _capital(self.meaning)
        return f"{text} ({self.when})" if self.when else text

    def as_dict(self, credential_id: str) -> dict[str, str | None]:
        """The `--json` shape (keys only ever added)."""
        return {"code": self.code, "meaning": self.meaning, "action": self.action,
                "command": self.command(credential_id), "by": self.by,
                "at": self.at.astimezone(UTC).isoformat() if self.at else None}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def reason_for(error: Exception, *, by: str, at: datetime) -> Reason:
    """The reason to store when a check failed with `error` (NeedsConsent, AppMisconfigured)."""
    from broker.errors import NeedsConsent

    needs_consent = isinstance(error, NeedsConsent)
    return Reason(getattr(error, "code", None) or "unknown", at, by, needs_consent)


@dataclass(frozen=True)
class TokenVersion:
    """One version of `rt-<id>`, from its properties only.

    `version` is None only on the `latest` of a credential from `Vault.list_credentials`,
    because listing secrets reports the current version's attributes but not its id.
    """

    version: str | None
    secret_id: str
    created_on: datetime | None
    not_before: datetime | None
    expires_on: datetime | None
    enabled: bool
    tags: dict[str, str]

    @classmethod
    def from_properties(cls, props: Any) -> TokenVersion:
        """From an azure-keyvault-secrets `SecretProperties` (duck-typed: no SDK import)."""
        return cls(version=props.version, secret_id=props.id, created_on=props.created_on,
                   not_before=props.not_before, expires_on=props.expires_on,
                   enabled=bool(props.enabled), tags=dict(props.tags or {}))

    @property
    def source(self) -> Source | None:
        value = self.tags.get("source")
        return Source(value) if value in Source._value2member_map_ else None

    @property
    def status(self) -> Status:
        value = self.tags.get("status")
        return Status(value) if value in Status._value2member_map_ else Status.ERROR

    @property
    def is_placeholder(self) -> bool:
        return self.status is Status.PENDING_CONSENT

    @property
    def consented_by(self) -> str:
        return self.tags.get("consented_by", "")

    @property
    def mfa(self) -> bool:
        return _flag(self.tags.get("mfa"))

    @property
    def obtained_at(self) -> datetime:
        """Falls back to the vault's dates for versions written by something other than us."""
        return (_instant(self.tags.get("obtained_at")) or self.not_before or self.created_on
                or datetime.min.replace(tzinfo=UTC))

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in self.tags.get(ROLES_TAG, "").split(",") if r)

    @property
    def reason(self) -> Reason | None:
        return Reason.from_tag(self.tags.get(REASON_TAG),
                               needs_consent=self.status is Status.NEEDS_CONSENT)

    @property
    def check(self) -> Check | None:
        return Check.from_tags(self.tags)


@dataclass(frozen=True)
class Credential:
    """What the vault says about one credential: latest `rt-<id>` tags plus `cs-<id>` expiry."""

    id: str
    environment: str
    product: str
    marketplace: str
    tenant_id: str
    client_id: str | None
    stored_status: Status
    secret_id: str
    latest: TokenVersion | None
    secret_expires_on: datetime | None = None
    last_validated_at: datetime | None = None
    last_validation: str | None = None
    stored_reason: Reason | None = None

    @property
    def is_cpv(self) -> bool:
        return self.client_id is None

    @classmethod
    def from_latest(cls, credential_id: str, latest: TokenVersion, secret_id: str,
                    secret_expires_on: datetime | None = None) -> Credential:
        tags = latest.tags
        check = latest.check
        client_id = tags.get("client_id") or CPV
        return cls(
            id=credential_id, environment=tags.get("environment", ""),
            product=tags.get("product", ""), marketplace=tags.get("marketplace", ""),
            tenant_id=tags.get("tenant_id", ""),
            client_id=None if client_id == CPV else client_id,
            stored_status=latest.status, secret_id=secret_id, latest=latest,
            # a credential moved to the CPV model keeps its old cs-<id> (history), which no
            # longer says anything about it
            secret_expires_on=None if client_id == CPV else secret_expires_on,
            last_validated_at=check.at if check else None,
            last_validation=check.result if check else None,
            stored_reason=latest.reason,
        )

    def days_until_token_expiry(self, now: datetime) -> int | None:
        if self.latest is None or self.latest.expires_on is None or self.latest.is_placeholder:
            return None
        return (self.latest.expires_on - now).days

    def days_until_secret_expiry(self, now: datetime) -> int | None:
        if self.secret_expires_on is None:
            return None
        return (self.secret_expires_on - now).days

    def status(self, now: datetime, warn_days: int = 30) -> Status:
        """The stored status, refined by dates: a token past its lifetime can only be re-consented,
        an expired client secret is an app error, and either within `warn_days` is expiring."""
        if self.stored_status not in (Status.ACTIVE, Status.EXPIRING):
            return self.stored_status
        if self.latest is not None and self.latest.expires_on is not None \
                and self.latest.expires_on <= now:
            return Status.NEEDS_CONSENT
        if self.secret_expires_on is not None and self.secret_expires_on <= now:
            return Status.ERROR
        horizon = now + timedelta(days=warn_days)
        token_expiry = None if self.latest is None else self.latest.expires_on
        if any(d is not None and d <= horizon for d in (token_expiry, self.secret_expires_on)):
            return Status.EXPIRING
        return Status.ACTIVE

    def reason(self, now: datetime, warn_days: int = 30) -> Reason | None:
        """Why `status(now)` is not active (None when it is): the reason a check stored, or
        the one read off a date (registration, the token's or the client secret's expiry)."""
        status = self.status(now, warn_days)
        latest = self.latest
        token_expiry = None if latest is None or latest.is_placeholder else latest.expires_on
        secret_expiry = self.secret_expires_on
        if status is Status.ACTIVE:
            return None
        if status is Status.EXPIRING:
            horizon = now + timedelta(days=warn_days)
            token_soon = token_expiry is not None and token_expiry <= horizon
            secret_soon = secret_expiry is not None and secret_expiry <= horizon
            if token_soon and secret_soon:
                return Reason("token-and-secret-expiring", min(token_expiry, secret_expiry))
            if secret_soon:
                return Reason("secret-expiring", secret_expiry)
            return Reason("token-expiring", token_expiry)
        if self.stored_status is status and self.stored_reason is not None:
            return self.stored_reason
        if status is Status.PENDING_CONSENT:
            return Reason("not-consented", latest.obtained_at if latest else None)
        if status is Status.NEEDS_CONSENT and token_expiry is not None and token_expiry <= now:
            return Reason("token-expired", token_expiry)
        if status is Status.ERROR and secret_expiry is not None and secret_expiry <= now:
            return Reason("secret-expired", secret_expiry)
        return Reason("unknown", needs_consent=status is Status.NEEDS_CONSENT)
