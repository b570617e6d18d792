"""The broker's only datastore: `rt-<id>` and `cs-<id>` secrets in Azure Key Vault.

The layout (names, content types, tags, dates, placeholder versions) is the contract in
ARCHITECTURE.md; the pure functions at the top build and read it, `Vault` talks to Key Vault,
and `vault_errors` turns azure-core exceptions into broker errors in exactly one place.

Permissions: reads need "Key Vault Secrets User"; writes, tag updates and deletes need
"Key Vault Secrets Officer" on the vault.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core import exceptions as az
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient

from broker.credentials import (
    CPV,
    CS_PREFIX,
    REASON_TAG,
    RT_PREFIX,
    Credential,
    CredentialSpec,
    Reason,
    Source,
    Status,
    TokenVersion,
    format_instant,
    is_credential_id,
)
from broker.errors import (
    BrokerError,
    Conflict,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.logs import get_logger, redact

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from broker.settings import Settings

RT_CONTENT_TYPE = "application/vnd.partner-refresh-token"
CS_CONTENT_TYPE = "application/vnd.partner-client-secret"
PLACEHOLDER_VALUE = "pending-consent"
MAX_TAGS, MAX_TAG_VALUE = 15, 256
# vault hosts whose challenge resource the SDK can verify; anything else (devstack) cannot
AZURE_VAULT_DOMAINS = (
    "vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net", "vault.microsoftazure.de",
    "managedhsm.azure.net", "managedhsm.azure.cn", "managedhsm.usgovcloudapi.net",
    "managedhsm.microsoftazure.de",
)
RETRY_TOTAL = 3  # azure-core's default of 10 would hold a rotation for minutes; callers retry

log = get_logger(__name__)


# -- the layout, as pure functions -----------------------------------------------------------

def is_azure_vault_host(host: str | None) -> bool:
    host = (host or "").lower().rstrip(".")
    return any(host.endswith("." + domain) for domain in AZURE_VAULT_DOMAINS)


HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                       r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VERSION = re.compile(r"^[0-9a-zA-Z]{1,64}$")


def parse_secret_id(url: str) -> KeyVaultSecretIdentifier:
    """A secret identifier URL, parsed by the SDK; InvalidInput for anything else.

    The SDK's parser is lenient (it drops `;params`, accepts any host text and empty path
    segments), and what it lets through later fails deep in urllib3 or the SDK; so the URL is
    held to what Key Vault itself issues before the SDK sees it.
    """
    problem = "Expected a Key Vault secret identifier: https://<vault>/secrets/<name>[/<version>]."
    if not isinstance(url, str) or not url.isascii() or not url.isprintable():
        raise InvalidInput(errors={"url": problem})
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        raise InvalidInput(errors={"url": problem}) from None
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # `/secrets/<name>/` is the latest version, as in Key Vault
    if (parts.scheme != "https" or parts.query or parts.fragment or ";" in parts.path
            or parts.username is not None or parts.password is not None
            or not HOST_NAME.match(parts.hostname or "") or "[" in parts.netloc
            or not 2 <= len(segments) <= 3 or segments[0] != "secrets"
            or not SECRET_NAME.match(segments[1])
            or (len(segments) == 3 and not VERSION.match(segments[2]))):
        raise InvalidInput(errors={"url": problem})
    try:
        return KeyVaultSecretIdentifier(url)
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput(errors={"url": problem}) from None


def credential_id_from_secret_name(name: str) -> str | None:
    return name[len(RT_PREFIX):] if name.startswith(RT_PREFIX) and len(name) > 3 else None


def token_tags(credential: Credential, *, source: Source, obtained_at: datetime,
               consented_by: str, mfa: bool, status: Status = Status.ACTIVE,
               roles: Sequence[str] = (), extra_tags: Mapping[str, str | None] | None = None,
               ) -> dict[str, str]:
    """The tags of one version of `rt-<id>` (None in `extra_tags` leaves a tag out)."""
    tags = {
        "credential": credential.id, "environment": credential.environment,
        "product": credential.product, "marketplace": credential.marketplace,
        "tenant_id": credential.tenant_id, "client_id": credential.client_id or CPV,
        "source": str(source), "obtained_at": format_instant(_aware(obtained_at)),
        "status": str(status), "consented_by": consented_by or "",
        "mfa": "true" if mfa else "false",
    }
    if roles:
        tags["roles"] = _fit(",".join(roles))
    return _checked(merge_tags(tags, extra_tags or {}))


def placeholder_tags(spec: CredentialSpec, *, now: datetime,
                     reason: Reason | None = None) -> dict[str, str]:
    """A registered-but-not-consented version: no token, disabled, status pending-consent
    (with the reason when it is not a first registration, such as a changed app)."""
    extra = {REASON_TAG: reason.tag()} if reason else {}
    return _checked({
        "credential": spec.id, "environment": spec.environment, "product": spec.product,
        "marketplace": spec.marketplace, "tenant_id": spec.tenant_id,
        "client_id": spec.client_id or CPV, "source": str(Source.CONSENT),
        "obtained_at": format_instant(_aware(now)), "status": str(Status.PENDING_CONSENT),
        "consented_by": "", "mfa": "false", **extra,
    })


def merge_tags(tags: Mapping[str, str], changes: Mapping[str, Any]) -> dict[str, str]:
    merged = dict(tags)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = _fit(str(value))
    return merged


def token_dates(obtained_at: datetime, lifetime_days: int) -> tuple[datetime, datetime]:
    """(not_before, expires_on) of a token version: its Entra inactivity lifetime."""
    obtained_at = _aware(obtained_at)
    return obtained_at, obtained_at + timedelta(days=lifetime_days)


def credentials_from_properties(items: Iterable[Any]) -> list[Credential]:
    """Credentials from one listing of secret properties (latest versions, no values)."""
    latest: dict[str, Any] = {}
    secret_expiry: dict[str, datetime | None] = {}
    for props in items:
        if props.name.startswith(RT_PREFIX) and props.content_type == RT_CONTENT_TYPE:
            latest[props.name[len(RT_PREFIX):]] = props
        elif props.name.startswith(CS_PREFIX) and props.content_type == CS_CONTENT_TYPE:
            secret_expiry[props.name[len(CS_PREFIX):]] = props.expires_on
    return [
        Credential.from_latest(cid, TokenVersion.from_properties(props), props.id,
                               secret_expiry.get(cid))
        for cid, props in sorted(latest.items())
    ]


def newest_first(versions: Iterable[TokenVersion]) -> list[TokenVersion]:
    """`obtained_at` orders versions (Key Vault's `created` has whole seconds only)."""
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(versions, key=lambda v: (v.obtained_at, v.created_on or floor), reverse=True)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _fit(value: str) -> str:
    return value[:MAX_TAG_VALUE]


def _checked(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise BrokerError(f"A version may carry at most {MAX_TAGS} tags, not {len(tags)}.",
                          hint="Drop extra tags; the layout's own tags leave room for four.")
    return tags


# -- errors, mapped once -----------------------------------------------------------------------

@contextlib.contextmanager
def vault_errors(credential_id: str | None = None) -> Iterator[None]:
    """Map azure-core and azure-identity exceptions to broker errors (messages hold no values).

    Every call about one credential passes here first, so an id that cannot be one (it would
    otherwise go into the request path as it is) is not found rather than an HTTP-level crash.
    """
    if credential_id is not None and not is_credential_id(credential_id):
        raise CredentialNotFound(credential_id)
    try:
        yield
    except BrokerError:
        raise
    except az.ResourceNotFoundError as exc:
        raise CredentialNotFound(credential_id or "?") from exc
    except az.ClientAuthenticationError as exc:
        raise BrokerError(
            f"Key Vault refused this identity: {_summary(exc)}",
            hint="Check DefaultAzureCredential's identity (managed identity, `az login` or "
                 "AZURE_* variables) and its role assignment on the vault.",
        ) from exc
    except az.HttpResponseError as exc:
        raise _from_response(exc, credential_id) from exc
    except (az.ServiceRequestError, az.ServiceResponseError) as exc:
        raise TransientFailure(f"Key Vault could not be reached: {type(exc).__name__}.") from exc


def _from_response(exc: az.HttpResponseError, credential_id: str | None) -> BrokerError:
    status = exc.status_code or 0
    code = getattr(exc.error, "code", None) or ""
    inner = (getattr(exc.error, "innererror", None) or {}).get("code", "")
    summary = _summary(exc)
    if status == 429 or status >= 500:
        retry_after = None
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            retry_after = float(exc.response.headers.get("Retry-After"))
        return TransientFailure(f"Key Vault answered {status}: {summary}",
                                retry_after=retry_after)
    if status == 403 and (inner == "SecretDisabled" or "disabled secret" in summary):
        return NeedsConsent(f"The requested version of {credential_id or 'the credential'} is "
                            "disabled (no consented token there).")
    if status == 403:
        return BrokerError(
            f"Key Vault denied the operation: {summary}",
            hint="Assign this identity 'Key Vault Secrets Officer' (the broker) or "
                 "'Key Vault Secrets User' (consumers) on the vault.",
        )
    if status == 409 and inner == "ObjectIsDeletedButRecoverable":
        return InvalidInput(
            errors={"id": "A removed credential has this id and can still be recovered: "
                          "recover it (Removed credentials, or `broker credentials recover "
                          "ID`), purge it where the vault allows, or choose another id."})
    if status == 409:
        return Conflict(f"Key Vault reported a conflict: {summary}")
    if status == 400:
        return InvalidInput(f"Key Vault rejected the request ({code or status}): {summary}")
    return BrokerError(f"Key Vault answered {status}: {summary}")


def _summary(exc: az.AzureError) -> str:
    text = getattr(getattr(exc, "error", None), "message", None) or exc.message or ""
    return redact(str(text).splitlines()[0][:300]) if text else type(exc).__name__


@dataclass(frozen=True)
class RemovedCredential:
    """A soft-deleted `rt-<id>`: what it was, when it was removed, and what the vault allows.

    `recovery_level` is Key Vault's: "Recoverable+Purgeable" lets an operator purge it now;
    "Recoverable" (purge protection, as production vaults have) allows only recovery, and Key
    Vault deletes it for good on `purge_on`.
    """

    id: str
    environment: str
    product: str
    marketplace: str
    tenant_id: str
    removed_on: datetime | None
    purge_on: datetime | None
    recovery_level: str

    @property
    def purgeable(self) -> bool:
        return "Purgeable" in (self.recovery_level or "")

    @classmethod
    def from_deleted(cls, deleted: Any) -> RemovedCredential:
        props = deleted.properties
        tags = dict(props.tags or {})
        return cls(id=props.name[len(RT_PREFIX):], environment=tags.get("environment", ""),
                   product=tags.get("product", ""), marketplace=tags.get("marketplace", ""),
                   tenant_id=tags.get("tenant_id", ""), removed_on=deleted.deleted_date,
                   purge_on=deleted.scheduled_purge_date,
                   recovery_level=props.recovery_level or "")


def purge_refusal(removed: RemovedCredential) -> InvalidInput:
    when = f" on {removed.purge_on:%Y-%m-%d}" if removed.purge_on else " when its retention ends"
    return InvalidInput(
        f"Credential {removed.id!r} cannot be purged: this vault has purge protection "
        f"(recovery level {removed.recovery_level or 'Recoverable'}), so Key Vault keeps the "
        f"removed secrets and deletes them for good{when}.",
        errors={"id": "This vault has purge protection: a removed credential can be recovered, "
                      f"not purged; Key Vault deletes it{when}."},
        hint="Recover it to use it again, or register the credential under another id.")


# -- the store -----------------------------------------------------------------------------------

def secret_client(vault_url: str, credential: TokenCredential, **kwargs: Any) -> SecretClient:
    kwargs.setdefault("retry_total", RETRY_TOTAL)
    if not is_azure_vault_host(urlsplit(vault_url).hostname):
        kwargs["verify_challenge_resource"] = False
    return SecretClient(vault_url, credential, **kwargs)


class Vault:
    """`rt-<id>`/`cs-<id>` reads and writes; every write is read back and compared."""

    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None,
                 **client_kwargs: Any) -> None:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.settings = settings
        self.url = settings.vault_url.rstrip("/")
        self.client = secret_client(self.url, credential, **client_kwargs)

    def secret_id(self, credential_id: str, version: str | None = None) -> str:
        base = f"{self.url}/secrets/{RT_PREFIX}{credential_id}"
        return f"{base}/{version}" if version else base

    def list_credentials(self) -> list[Credential]:
        """One listing of secret properties: latest versions' tags, no values read."""
        with vault_errors():
            return credentials_from_properties(self.client.list_properties_of_secrets())

    def get_credential(self, credential_id: str) -> Credential:
        latest = self.latest_version(credential_id)
        expires = None
        if latest.tags.get("client_id", CPV) != CPV:
            expires = self._client_secret_expiry(credential_id)
        return Credential.from_latest(credential_id, latest, self.secret_id(credential_id),
                                      expires)

    def versions(self, credential_id: str) -> list[TokenVersion]:
        """Every version of `rt-<id>`, newest first; CredentialNotFound when there is none."""
        with vault_errors(credential_id):
            found = [TokenVersion.from_properties(p) for p in
                     self.client.list_properties_of_secret_versions(RT_PREFIX + credential_id)]
        if not found:
            raise CredentialNotFound(credential_id)
        return newest_first(found)

    def latest_version(self, credential_id: str) -> TokenVersion:
        return self.versions(credential_id)[0]

    def create_placeholder(self, spec: CredentialSpec, *, now: datetime,
                           reason: Reason | None = None) -> TokenVersion:
        """Disabled `pending-consent` version: registers the credential, or asks for new consent."""
        with vault_errors(spec.id):
            secret = self.client.set_secret(
                RT_PREFIX + spec.id, PLACEHOLDER_VALUE, enabled=False,
                content_type=RT_CONTENT_TYPE,
                tags=placeholder_tags(spec, now=now, reason=reason))
        log.info("placeholder version %s written for %s", secret.properties.version, spec.id)
        return TokenVersion.from_properties(secret.properties)

    def write_token(self, credential: Credential, token: str, *, source: Source,
                    obtained_at: datetime, consented_by: str, mfa: bool,
                    roles: Sequence[str] = (), extra_tags: Mapping[str, Any] | None = None,
                    ) -> TokenVersion:
        """Store a token as the next version, then read that version back and compare."""
        if not token or token == PLACEHOLDER_VALUE:
            raise InvalidInput(errors={"refresh_token": "No refresh token to store."})
        redact.register(token)
        tags = token_tags(credential, source=source, obtained_at=obtained_at,
                          consented_by=consented_by, mfa=mfa, roles=roles,
                          extra_tags=extra_tags)
        not_before, expires_on = token_dates(obtained_at, self.settings.token_lifetime_days)
        name = RT_PREFIX + credential.id
        with vault_errors(credential.id):
            written = self.client.set_secret(name, token, enabled=True,
                                             content_type=RT_CONTENT_TYPE, tags=tags,
                                             not_before=not_before, expires_on=expires_on)
            self._read_back(name, written.properties.version, token, credential.id)
        log.info("token version %s written for %s (source=%s)", written.properties.version,
                 credential.id, source)
        return TokenVersion.from_properties(written.properties)

    def read_token(self, credential_id: str, version: str | None = None,
                   ) -> tuple[str, TokenVersion]:
        """A token and its version (the newest by `obtained_at` when no version is given)."""
        if version is None:
            latest = self.latest_version(credential_id)
            if latest.is_placeholder or not latest.enabled:
                raise NeedsConsent(f"{credential_id} has no consented token yet.")
            version = latest.version
        with vault_errors(credential_id):
            secret = self.client.get_secret(RT_PREFIX + credential_id, version)
        current = TokenVersion.from_properties(secret.properties)
        if secret.value == PLACEHOLDER_VALUE or current.is_placeholder:
            raise NeedsConsent(f"{credential_id} has no consented token yet.")
        redact.register(secret.value)
        return secret.value, current

    def update_tags(self, credential_id: str, version: str, **tags: Any) -> TokenVersion:
        """Merge tags into one version (a None value deletes that tag)."""
        current = self._version(credential_id, version)
        merged = _checked(merge_tags(current.tags, tags))
        with vault_errors(credential_id):
            props = self.client.update_secret_properties(RT_PREFIX + credential_id, version,
                                                         tags=merged)
        return TokenVersion.from_properties(props)

    def set_enabled(self, credential_id: str, version: str, enabled: bool) -> TokenVersion:
        with vault_errors(credential_id):
            props = self.client.update_secret_properties(RT_PREFIX + credential_id, version,
                                                         enabled=enabled)
        return TokenVersion.from_properties(props)

    def write_client_secret(self, credential_id: str, secret: str, expires_on: datetime) -> None:
        """Store the partner app's client secret as the next version of `cs-<id>`."""
        if not secret:
            raise InvalidInput(errors={"client_secret": "Enter the app's client secret."})
        redact.register(secret)
        name = CS_PREFIX + credential_id
        with vault_errors(credential_id):
            written = self.client.set_secret(
                name, secret, content_type=CS_CONTENT_TYPE, expires_on=_aware(expires_on),
                tags={"credential": credential_id,
                      "written_at": format_instant(datetime.now(UTC))})
            self._read_back(name, written.properties.version, secret, credential_id)

    def read_client_secret(self, credential_id: str) -> str:
        with vault_errors(credential_id):
            try:
                value = self.client.get_secret(CS_PREFIX + credential_id).value
            except az.ResourceNotFoundError:
                raise CredentialNotFound(
                    credential_id, f"No client secret is stored for {credential_id!r}.",
                    hint="Enter the app's client secret with `broker credentials edit`.",
                ) from None
        redact.register(value)
        return value

    def delete_credential(self, credential_id: str) -> None:
        """Soft delete `rt-<id>` and `cs-<id>`: recoverable for the vault's retention period."""
        with vault_errors(credential_id):
            self.client.begin_delete_secret(RT_PREFIX + credential_id).wait()
            with contextlib.suppress(az.ResourceNotFoundError):
                self.client.begin_delete_secret(CS_PREFIX + credential_id).wait()
        log.info("credential %s deleted (recoverable)", credential_id)

    def removed_credentials(self) -> list[RemovedCredential]:
        """Soft-deleted credentials still in the vault (`rt-<id>` only), newest removal first."""
        with vault_errors():
            found = [RemovedCredential.from_deleted(d) for d in self.client.list_deleted_secrets()
                     if d.properties.name.startswith(RT_PREFIX)
                     and d.properties.content_type == RT_CONTENT_TYPE]
        floor = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda r: r.removed_on or floor, reverse=True)

    def removed_credential(self, credential_id: str) -> RemovedCredential:
        """CredentialNotFound unless `rt-<id>` is soft-deleted and recoverable."""
        with vault_errors(credential_id):
            try:
                deleted = self.client.get_deleted_secret(RT_PREFIX + credential_id)
            except az.ResourceNotFoundError:
                raise CredentialNotFound(
                    credential_id, f"No removed credential with id {credential_id!r}.",
                    hint="Removed credentials are kept for the vault's retention period (90 "
                         "days by default); `broker credentials list --removed` shows them.",
                ) from None
        return RemovedCredential.from_deleted(deleted)

    def recover_credential(self, credential_id: str) -> None:
        """Recover `rt-<id>` and, if it was removed with it, `cs-<id>`."""
        self.removed_credential(credential_id)
        with vault_errors(credential_id):
            self.client.begin_recover_deleted_secret(RT_PREFIX + credential_id).wait()
            with contextlib.suppress(az.ResourceNotFoundError):
                self.client.begin_recover_deleted_secret(CS_PREFIX + credential_id).wait()
        log.info("credential %s recovered", credential_id)

    def purge_credential(self, credential_id: str) -> None:
        """Delete the removed `rt-<id>` and `cs-<id>` for good; InvalidInput under purge
        protection (checked from the recovery level first, and from Key Vault's 403)."""
        removed = self.removed_credential(credential_id)
        if not removed.purgeable:
            raise purge_refusal(removed)
        try:
            with vault_errors(credential_id):
                self.client.purge_deleted_secret(RT_PREFIX + credential_id)
                with contextlib.suppress(az.ResourceNotFoundError):
                    self.client.purge_deleted_secret(CS_PREFIX + credential_id)
        except BrokerError as exc:
            if "purge protection" in str(exc).lower():
                raise purge_refusal(removed) from exc
            raise
        log.info("credential %s purged", credential_id)

    def _version(self, credential_id: str, version: str) -> TokenVersion:
        # listing is the only value-free read of one version's tags (and works when disabled)
        for found in self.versions(credential_id):
            if found.version == version:
                return found
        raise CredentialNotFound(credential_id, f"{credential_id} has no version {version}.")

    def _client_secret_expiry(self, credential_id: str) -> datetime | None:
        with vault_errors(credential_id):
            try:
                found = list(self.client.list_properties_of_secret_versions(
                    CS_PREFIX + credential_id))
            except az.ResourceNotFoundError:
                return None
        # `written_at` orders versions written within one second (`created` has whole seconds)
        found = [p for p in found if p.enabled]
        newest = max(found, key=lambda p: ((p.tags or {}).get("written_at", ""),
                                           p.created_on or datetime.min.replace(tzinfo=UTC)),
                     default=None)
        return None if newest is None else newest.expires_on

    def _read_back(self, name: str, version: str, value: str, credential_id: str) -> None:
        stored = self.client.get_secret(name, version).value or ""
        if not hmac.compare_digest(stored.encode(), value.encode()):
            raise BrokerError(
                f"The value read back from {name}/{version} differs from the one written.",
                hint="Do not rely on this version; check the vault for other writers and run "
                     "the operation again.",
            )
