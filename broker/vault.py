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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core import exceptions as az
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient

from broker.azure_errors import KEY_VAULT, Target, from_azure, retry_after, summary
from broker.credentials import (
    CPV,
    CS_PREFIX,
    PLACEHOLDER_VALUE,
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
    AccessDenied,
    BrokerError,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
    network_cause,
)
from broker.logs import get_logger, redact
from broker.pacing import Pacer, WindowLimiter

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from broker.settings import Settings

RT_CONTENT_TYPE = "application/vnd.partner-refresh-token"
CS_CONTENT_TYPE = "application/vnd.partner-client-secret"
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
def vault_errors(credential_id: str | None = None, *, url: str | None = None,
                 target: Target = KEY_VAULT) -> Iterator[None]:
    """Map azure-core and azure-identity exceptions to broker errors (messages hold no values):
    Key Vault's own meanings first (a missing secret, a disabled version, a name still being
    deleted, where the vault is), then the common rules of `broker.azure_errors`. `target`
    names the role an identity needs (Secrets Officer for the broker, Secrets User for a
    consumer).

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
    except az.HttpResponseError as exc:
        raise _from_response(exc, credential_id, target) from exc
    except (az.ServiceRequestError, az.ServiceResponseError) as exc:
        where = f"Key Vault at {url}" if url else "Key Vault (BROKER_VAULT_URL)"
        what = "did not answer" if isinstance(exc, az.ServiceResponseError) \
            else "could not be reached"
        raise TransientFailure(
            f"{where} {what}: {network_cause(exc)}.",
            hint="Check BROKER_VAULT_URL and that the vault is reachable from here, then run it "
                 "again; the rotation worker retries on its own.") from exc
    except az.AzureError as exc:  # ClientAuthenticationError: no token for this identity
        raise from_azure(exc, target) from exc


# empty pages (with a nextLink) followed before a versions page is shown as it is
EMPTY_PAGES_FOLLOWED = 5


def _from_response(exc: az.HttpResponseError, credential_id: str | None,
                   target: Target) -> BrokerError:
    status = exc.status_code or 0
    code = getattr(exc.error, "code", None) or ""
    inner = (getattr(exc.error, "innererror", None) or {}).get("code", "")
    if status == 403 and (inner == "SecretDisabled" or "disabled secret" in summary(exc)):
        return NeedsConsent(f"The requested version of {credential_id or 'the credential'} is "
                            "disabled (no consented token there).")
    if status == 403 and inner == "ForbiddenByRbac" and \
            (precise := access_denied(exc, credential_id)) is not None:
        return precise
    if status == 409 and inner == "ObjectIsDeletedButRecoverable":
        # `Vault.create_placeholder` says whether the vault allows a purge; elsewhere, no
        # purge is suggested (production vaults refuse it)
        return InvalidInput(
            errors={"id": "A removed credential has this id and can still be recovered: "
                          "recover it (Removed credentials) or choose another id."})
    if status == 409 and inner == "ObjectIsBeingDeleted":
        return TransientFailure(
            f"Key Vault is still deleting {credential_id or 'this secret'}; it can be used "
            "again in a few seconds.", retry_after=2.0)
    if status == 400:
        return InvalidInput(f"Key Vault rejected the request ({code or status}): "
                            f"{summary(exc)}")
    return from_azure(exc, target)  # 401/403 AccessDenied, 409 Conflict, 429/5xx transient


# Key Vault's ForbiddenByRbac message names the data action and the resource it refused
_RBAC_ACTION = re.compile(r"Action: '([^'\r\n]{1,200})'")
_RBAC_RESOURCE = re.compile(r"Resource: '([^'\r\n]{1,600})'")
READ_ACTIONS = ("/getSecret/action", "/readMetadata/action")


def access_denied(exc: az.HttpResponseError, credential_id: str | None) -> AccessDenied | None:
    """Key Vault's RBAC refusal, precisely: the least built-in role that allows the refused data
    action (Secrets User to read, Secrets Officer to change) and the resource it names, which is
    where an operator assigns it (one secret, or the vault for a listing). None when the
    message names no action and resource (the caller's target then says what to grant)."""
    text = str(getattr(exc.error, "message", None) or exc.message or "")
    action, resource = _RBAC_ACTION.search(text), _RBAC_RESOURCE.search(text)
    if action is None or resource is None:
        return None
    action_name, scope = action.group(1), resource.group(1)
    role = ("Key Vault Secrets User" if action_name.endswith(READ_ACTIONS)
            else "Key Vault Secrets Officer")
    what = action_name.removesuffix("/action").rsplit("/", 1)[-1]
    subject = f" on {credential_id}" if credential_id else ""
    return AccessDenied(f"Key Vault refused {what}{subject} to this identity (Azure RBAC: no "
                        f"role at {scope} allows it).", role=role, scope=scope,
                        action=action_name,
                        hint=f"Ask an operator to assign '{role}' on {scope} to this identity, "
                             "if it should have that access.")


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

def pooled_transport(connections: int, **timeouts: float):
    """azure-core's requests transport with a connection pool as large as the threads using it.

    requests' default pool keeps 10 connections per host; with more threads than that, every
    extra request opens (and TLS-handshakes) a connection only to throw it away afterwards.
    Retries stay azure-core's business (the adapter's own are off, as azure-core sets them).
    `timeouts` (`connection_timeout`, `read_timeout`) are the transport's: a client given a
    transport no longer applies its own.
    """
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4, pool_maxsize=max(10, connections),
        max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=True, **timeouts)


def secret_client(vault_url: str, credential: TokenCredential, *, connections: int = 10,
                  **kwargs: Any) -> SecretClient:
    kwargs.setdefault("retry_total", RETRY_TOTAL)
    if "transport" not in kwargs:
        timeouts = {k: kwargs[k] for k in ("connection_timeout", "read_timeout") if k in kwargs}
        kwargs["transport"] = pooled_transport(connections, **timeouts)
    if not is_azure_vault_host(urlsplit(vault_url).hostname):
        kwargs["verify_challenge_resource"] = False
    return SecretClient(vault_url, credential, **kwargs)


@dataclass(frozen=True)
class Current:
    """Key Vault's current version of `rt-<id>` (what an unversioned GET returns) and its value.

    `value` is None when that version is disabled (a placeholder, or a credential whose app
    changed): Key Vault refuses to return it, so its properties come from the version listing.
    """

    version: TokenVersion
    value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Written:
    """A version just written and read back. `current` says whether it was still Key Vault's
    current version when read back: False means another writer wrote after it (fencing)."""

    version: TokenVersion
    current: bool


class Vault:
    """`rt-<id>`/`cs-<id>` reads and writes; every write is read back and compared.

    The hot path reads one version, never a listing: Key Vault's unversioned GET is its current
    version, which is what consumers receive and so what the broker calls latest. Listings of
    versions are for pages that show history (`versions_page`) and for rare repairs.
    Every secret create first takes a permit from `pacer` (shared across processes when one is
    given) and goes out without azure-core's own retries, so a retry is paced like a first try.
    """

    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None,
                 pacer: Pacer | None = None, **client_kwargs: Any) -> None:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.settings = settings
        self.url = settings.vault_url.rstrip("/")
        client_kwargs.setdefault("connections", getattr(settings, "rotate_concurrency", 8) + 4)
        self.client = secret_client(self.url, credential, **client_kwargs)
        self.pacer: Pacer = pacer or WindowLimiter(
            getattr(settings, "vault_creates_per_10s", 270), 10.0)

    def secret_id(self, credential_id: str, version: str | None = None) -> str:
        base = f"{self.url}/secrets/{RT_PREFIX}{credential_id}"
        return f"{base}/{version}" if version else base

    def list_credentials(self) -> list[Credential]:
        """One listing of secret properties: latest versions' tags, no values read."""
        with vault_errors(url=self.url):
            return credentials_from_properties(self.client.list_properties_of_secrets())

    def get_credential(self, credential_id: str, *, secret_expiry: bool = True) -> Credential:
        """The credential as its current version describes it (one GET); `secret_expiry`
        adds the partner app's client secret expiry (a listing of `cs-<id>`, own app only)."""
        return self.credential_of(credential_id, self.current(credential_id).version,
                                  secret_expiry=secret_expiry)

    def credential_of(self, credential_id: str, latest: TokenVersion, *,
                      secret_expiry: bool = True) -> Credential:
        expires = None
        if secret_expiry and latest.tags.get("client_id", CPV) != CPV:
            expires = self._client_secret_expiry(credential_id)
        return Credential.from_latest(credential_id, latest, self.secret_id(credential_id),
                                      expires)

    def current(self, credential_id: str) -> Current:
        """Key Vault's current version of `rt-<id>` with its value: one GET.

        A disabled current version (a placeholder) cannot be read; only then are the versions
        listed to find its properties (the newest created, as Key Vault orders them).
        """
        with vault_errors(credential_id, url=self.url):
            try:
                secret = self.client.get_secret(RT_PREFIX + credential_id)
            except az.HttpResponseError as exc:
                if exc.status_code != 403 or not _is_disabled(exc):
                    raise
                secret = None
        if secret is None:
            return Current(self._newest_created(credential_id))
        version = TokenVersion.from_properties(secret.properties)
        if secret.value == PLACEHOLDER_VALUE or version.is_placeholder:
            return Current(version)
        redact.register(secret.value)
        return Current(version, secret.value)

    def versions(self, credential_id: str) -> list[TokenVersion]:
        """Every version of `rt-<id>`, newest first; CredentialNotFound when there is none.

        A listing of 25 a page: for repairs and exports, never on the hot path."""
        with vault_errors(credential_id, url=self.url):
            found = [TokenVersion.from_properties(p) for p in
                     self.client.list_properties_of_secret_versions(RT_PREFIX + credential_id)]
        if not found:
            raise CredentialNotFound(credential_id)
        return newest_first(found)

    def versions_page(self, credential_id: str, *, page_size: int = 25,
                      continuation: str | None = None) -> tuple[list[TokenVersion], str | None]:
        """One page of `rt-<id>`'s versions as Key Vault pages them (its order, not ours) and
        the continuation for the next page (None on the last): one request per page, whatever
        the number of versions. CredentialNotFound for an unknown id.

        Key Vault may answer a page short, or empty with a `nextLink`: an empty page is
        followed (a few times at most) so that a page shown is never empty while more exist.
        """
        page_size = max(1, min(25, page_size))
        if continuation is not None and not self._is_versions_link(credential_id, continuation):
            # the SDK would follow any URL with the vault's bearer token: only this vault's
            # listing of this secret's versions may continue a page
            raise InvalidInput(errors={"page": "Not a page of this credential's versions."})
        with vault_errors(credential_id, url=self.url):
            pages = self.client.list_properties_of_secret_versions(
                RT_PREFIX + credential_id, max_page_size=page_size,
            ).by_page(continuation_token=continuation)
            items: list[TokenVersion] = []
            for _ in range(EMPTY_PAGES_FOLLOWED + 1):
                try:
                    items = [TokenVersion.from_properties(p) for p in next(pages)]
                except StopIteration:
                    break
                if items or not pages.continuation_token:
                    break
            next_token = pages.continuation_token
        if not items and continuation is None:
            raise CredentialNotFound(credential_id)
        return newest_first(items), next_token

    def _is_versions_link(self, credential_id: str, link: str) -> bool:
        if not isinstance(link, str) or not link.isascii() or not link.isprintable():
            return False
        parts, ours = urlsplit(link), urlsplit(self.url)
        return (parts.scheme == "https" and parts.netloc.lower() == ours.netloc.lower()
                and parts.path.lower() == f"/secrets/{RT_PREFIX}{credential_id}/versions"
                and not parts.fragment and parts.username is None)

    def latest_version(self, credential_id: str) -> TokenVersion:
        return self.current(credential_id).version

    def create_placeholder(self, spec: CredentialSpec, *, now: datetime,
                           reason: Reason | None = None) -> TokenVersion:
        """Disabled `pending-consent` version: registers the credential, or asks for new consent.

        An id still held by a removed credential is InvalidInput that offers a purge only when
        this vault allows one (purge protection refuses it)."""
        with vault_errors(spec.id, url=self.url):
            try:
                secret = self._create(
                    RT_PREFIX + spec.id, PLACEHOLDER_VALUE, enabled=False,
                    content_type=RT_CONTENT_TYPE,
                    tags=placeholder_tags(spec, now=now, reason=reason))
            except az.ResourceExistsError as exc:
                inner = (getattr(exc.error, "innererror", None) or {}).get("code", "")
                if inner != "ObjectIsDeletedButRecoverable":
                    raise
                raise self._id_held_by_removed(spec.id) from None
        log.info("placeholder version %s written for %s", secret.properties.version, spec.id)
        return TokenVersion.from_properties(secret.properties)

    def write_token(self, credential: Credential, token: str, *, source: Source,
                    obtained_at: datetime, consented_by: str, mfa: bool,
                    roles: Sequence[str] = (), extra_tags: Mapping[str, Any] | None = None,
                    ) -> TokenVersion:
        """Store a token as the next version, then read that version back and compare."""
        return self.write_version(credential, token, source=source, obtained_at=obtained_at,
                                  consented_by=consented_by, mfa=mfa, roles=roles,
                                  extra_tags=extra_tags).version

    def write_version(self, credential: Credential, token: str, *, source: Source,
                      obtained_at: datetime, consented_by: str, mfa: bool,
                      roles: Sequence[str] = (), extra_tags: Mapping[str, Any] | None = None,
                      ) -> Written:
        """`write_token`, also saying whether the version written is still the current one.

        The read-back is an unversioned GET: in the usual case it returns the version just
        written (two requests in all, PUT and GET), and it also shows whether anyone wrote
        after us, which is what the writers' fencing needs to know.
        """
        if not token or token == PLACEHOLDER_VALUE:
            raise InvalidInput(errors={"refresh_token": "No refresh token to store."})
        redact.register(token)
        tags = token_tags(credential, source=source, obtained_at=obtained_at,
                          consented_by=consented_by, mfa=mfa, roles=roles,
                          extra_tags=extra_tags)
        written = self._put_token(credential.id, token, tags, obtained_at)
        log.info("token version %s written for %s (source=%s)", written.version.version,
                 credential.id, source)
        return written

    def republish(self, credential_id: str, version: TokenVersion) -> Written:
        """Write `version`'s token again, with its tags and dates, as the newest version.

        Only the fencing uses this: it puts a newer consent back on top after a writer that
        had lost its lease wrote over it. No token is obtained; the copy is the same token
        with the same `obtained_at`, so what consumers receive is the consent again.
        """
        if version.is_placeholder:
            with vault_errors(credential_id, url=self.url):
                secret = self._create(RT_PREFIX + credential_id, PLACEHOLDER_VALUE,
                                      enabled=False, content_type=RT_CONTENT_TYPE,
                                      tags=dict(version.tags))
            log.warning("placeholder of %s republished: a writer without the lease had "
                        "written over it", credential_id)
            return Written(TokenVersion.from_properties(secret.properties), True)
        with vault_errors(credential_id, url=self.url):
            value = self.client.get_secret(RT_PREFIX + credential_id, version.version).value
        if not value or value == PLACEHOLDER_VALUE:
            raise NeedsConsent(f"{credential_id} has no token in version {version.version}.")
        redact.register(value)
        written = self._put_token(credential_id, value, dict(version.tags),
                                  version.obtained_at)
        log.warning("version %s of %s republished as %s: a writer without the lease had "
                    "written over it", version.version, credential_id, written.version.version)
        return written

    def _put_token(self, credential_id: str, token: str, tags: dict[str, str],
                   obtained_at: datetime) -> Written:
        not_before, expires_on = token_dates(obtained_at, self.settings.token_lifetime_days)
        name = RT_PREFIX + credential_id
        with vault_errors(credential_id, url=self.url):
            try:
                created = self._create(name, token, enabled=True, content_type=RT_CONTENT_TYPE,
                                       tags=tags, not_before=not_before, expires_on=expires_on)
            except az.ServiceResponseError:
                # the request went out and the answer was lost: find out what Key Vault did
                created = self._committed(name, token, tags)
            version = created.properties.version
            latest = self.client.get_secret(name)
            current = latest.properties.version == version
            stored = latest.value if current else self.client.get_secret(name, version).value
        _compare(stored, token, name, version)
        return Written(TokenVersion.from_properties(created.properties), current)

    def _committed(self, name: str, token: str, tags: dict[str, str]):
        """After a write whose answer was lost: the version it committed, found by reading the
        current one (same value, same `obtained_at`); TransientFailure saying what is known."""
        try:
            latest = self.client.get_secret(name)
        except (az.AzureError, OSError):
            raise TransientFailure(
                f"Key Vault at {self.url} lost its answer to the write of a new version of "
                f"{name}, and could not be asked afterwards: the version may or may not have "
                "been stored.",
                hint="Open the credential to see its versions before doing it again; a "
                     "version stored twice holds the same token and does no harm.",
                maybe_stored=True) from None
        def ours(secret) -> bool:
            return (secret.value is not None
                    and hmac.compare_digest(secret.value.encode(), token.encode())
                    and (secret.properties.tags or {}).get("obtained_at") == tags["obtained_at"])

        if ours(latest):
            log.warning("Key Vault's answer to the write of %s was lost; the version %s is "
                        "stored", name, latest.properties.version)
            return latest
        # another writer may have come after ours: look for it among the versions' tags
        with contextlib.suppress(az.AzureError, OSError):
            for props in self.client.list_properties_of_secret_versions(name):
                if (props.tags or {}).get("obtained_at") == tags["obtained_at"]:
                    found = self.client.get_secret(name, props.version)
                    if ours(found):
                        return found
        raise TransientFailure(
                f"Key Vault at {self.url} lost its answer to the write of a new version of "
                f"{name}; reading it afterwards shows the version was not stored.",
                hint="Nothing was stored; try again.")

    def _create(self, name: str, value: str, **kwargs: Any):
        """One secret create, paced: a permit first, no azure-core retry (a 429 or 5xx goes
        back to the caller's retry, which takes a new permit), and a 429 slows the pacer."""
        self.pacer.take()
        try:
            return self.client.set_secret(name, value, retry_total=0, **kwargs)
        except az.HttpResponseError as exc:
            if exc.status_code == 429:
                self.pacer.throttled(retry_after(exc))
            raise

    def read_token(self, credential_id: str, version: str | None = None,
                   ) -> tuple[str, TokenVersion]:
        """A token and its version (Key Vault's current one when no version is given)."""
        if version is None:
            current = self.current(credential_id)
            if current.value is None or not current.version.enabled:
                raise NeedsConsent(f"{credential_id} has no consented token yet.")
            return current.value, current.version
        with vault_errors(credential_id, url=self.url):
            secret = self.client.get_secret(RT_PREFIX + credential_id, version)
        found = TokenVersion.from_properties(secret.properties)
        if secret.value == PLACEHOLDER_VALUE or found.is_placeholder:
            raise NeedsConsent(f"{credential_id} has no consented token yet.")
        redact.register(secret.value)
        return secret.value, found

    def update_tags(self, credential_id: str, version: str, *, base: TokenVersion | None = None,
                    **tags: Any) -> TokenVersion:
        """Merge tags into one version (a None value deletes that tag).

        Key Vault replaces a version's tags as a whole, so the current ones are needed: pass
        `base` when the caller just read that version (no extra request), else they are read.
        """
        if base is None or base.version != version:
            base = self._version(credential_id, version)
        merged = _checked(merge_tags(base.tags, tags))
        with vault_errors(credential_id, url=self.url):
            props = self.client.update_secret_properties(RT_PREFIX + credential_id, version,
                                                         tags=merged)
        return TokenVersion.from_properties(props)

    def set_enabled(self, credential_id: str, version: str, enabled: bool) -> TokenVersion:
        with vault_errors(credential_id, url=self.url):
            props = self.client.update_secret_properties(RT_PREFIX + credential_id, version,
                                                         enabled=enabled)
        return TokenVersion.from_properties(props)

    def write_client_secret(self, credential_id: str, secret: str, expires_on: datetime) -> None:
        """Store the partner app's client secret as the next version of `cs-<id>`."""
        if not secret:
            raise InvalidInput(errors={"client_secret": "Enter the app's client secret."})
        redact.register(secret)
        name = CS_PREFIX + credential_id
        with vault_errors(credential_id, url=self.url):
            written = self._create(
                name, secret, content_type=CS_CONTENT_TYPE, expires_on=_aware(expires_on),
                tags={"credential": credential_id,
                      "written_at": format_instant(datetime.now(UTC))})
            version = written.properties.version
            _compare(self.client.get_secret(name, version).value, secret, name, version)

    def read_client_secret(self, credential_id: str) -> str:
        with vault_errors(credential_id, url=self.url):
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
        with vault_errors(credential_id, url=self.url):
            self.client.begin_delete_secret(RT_PREFIX + credential_id).wait()
            with contextlib.suppress(az.ResourceNotFoundError):
                self.client.begin_delete_secret(CS_PREFIX + credential_id).wait()
        log.info("credential %s deleted (recoverable)", credential_id)

    def removed_credentials(self) -> list[RemovedCredential]:
        """Soft-deleted credentials still in the vault (`rt-<id>` only), newest removal first."""
        with vault_errors(url=self.url):
            found = [RemovedCredential.from_deleted(d) for d in self.client.list_deleted_secrets()
                     if d.properties.name.startswith(RT_PREFIX)
                     and d.properties.content_type == RT_CONTENT_TYPE]
        floor = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda r: r.removed_on or floor, reverse=True)

    def removed_credential(self, credential_id: str) -> RemovedCredential:
        """CredentialNotFound unless `rt-<id>` is soft-deleted and recoverable."""
        name = RT_PREFIX + credential_id
        with vault_errors(credential_id, url=self.url):
            try:
                deleted = self.client.get_deleted_secret(name)
            except az.ResourceNotFoundError:
                raise CredentialNotFound(
                    credential_id, f"No removed credential with id {credential_id!r}.",
                    hint="Removed credentials are kept for the vault's retention period (90 "
                         "days by default); `broker credentials list --removed` shows them.",
                ) from None
            except az.HttpResponseError as exc:
                # Key Vault answers 403 SecretDisabled for a deleted secret whose latest version
                # is disabled (a credential removed before anyone consented); the listing of
                # deleted secrets still describes it
                if exc.status_code != 403 or not _is_disabled(exc):
                    raise
                deleted = next((d for d in self.client.list_deleted_secrets()
                                if (d.properties.name or "").lower() == name.lower()), None)
                if deleted is None:
                    raise CredentialNotFound(
                        credential_id, f"No removed credential with id {credential_id!r}.",
                    ) from None
        return RemovedCredential.from_deleted(deleted)

    def _id_held_by_removed(self, credential_id: str) -> InvalidInput:
        """The id is a removed credential's: recover it, purge it if the vault allows, or
        choose another id."""
        try:
            removed = self.removed_credential(credential_id)
        except BrokerError:
            removed = None
        if removed is not None and removed.purgeable:
            text = ("A removed credential has this id and can still be recovered: recover it "
                    "or purge it (Removed credentials), or choose another id.")
        else:
            when = f" on {removed.purge_on:%Y-%m-%d}" if removed and removed.purge_on else ""
            text = ("A removed credential has this id and can still be recovered, not purged "
                    f"(purge protection; Key Vault deletes it{when or ' when its retention ends'}"
                    "): recover it (Removed credentials) or choose another id.")
        return InvalidInput(errors={"id": text})

    def recover_credential(self, credential_id: str) -> None:
        """Recover `rt-<id>` and, if it was removed with it, `cs-<id>`."""
        self.removed_credential(credential_id)
        with vault_errors(credential_id, url=self.url):
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
            with vault_errors(credential_id, url=self.url):
                self.client.purge_deleted_secret(RT_PREFIX + credential_id)
                with contextlib.suppress(az.ResourceNotFoundError):
                    self.client.purge_deleted_secret(CS_PREFIX + credential_id)
        except BrokerError as exc:
            if "purge protection" in str(exc).lower():
                raise purge_refusal(removed) from exc
            raise
        log.info("credential %s purged", credential_id)

    def _version(self, credential_id: str, version: str) -> TokenVersion:
        """One version's properties: a GET of that version (enabled), else from the listing
        (Key Vault refuses to return a disabled version, and a listing has no values)."""
        with vault_errors(credential_id, url=self.url):
            try:
                secret = self.client.get_secret(RT_PREFIX + credential_id, version)
            except az.HttpResponseError as exc:
                if exc.status_code != 403 or not _is_disabled(exc):
                    raise
            else:
                if secret.value and secret.value != PLACEHOLDER_VALUE:
                    redact.register(secret.value)
                return TokenVersion.from_properties(secret.properties)
        for found in self.versions(credential_id):
            if found.version == version:
                return found
        raise CredentialNotFound(credential_id, f"{credential_id} has no version {version}.")

    def _newest_created(self, credential_id: str) -> TokenVersion:
        """The version Key Vault made current last, from the listing (its `created` has whole
        seconds only, so `obtained_at` breaks ties between versions of the same second)."""
        found = self.versions(credential_id)
        floor = datetime.min.replace(tzinfo=UTC)
        return max(found, key=lambda v: (v.created_on or floor, v.obtained_at))

    def _client_secret_expiry(self, credential_id: str) -> datetime | None:
        with vault_errors(credential_id, url=self.url):
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


def _is_disabled(exc: az.HttpResponseError) -> bool:
    inner = (getattr(exc.error, "innererror", None) or {}).get("code", "")
    return inner == "SecretDisabled" or "disabled" in (summary(exc) or "").lower()


def _compare(stored: str | None, value: str, name: str, version: str) -> None:
    if not hmac.compare_digest((stored or "").encode(), value.encode()):
        raise BrokerError(
            f"The value read back from {name}/{version} differs from the one written.",
            hint="Do not rely on this version; check the vault for other writers and run "
                 "the operation again.",
        )
