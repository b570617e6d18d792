"""The consumer API: refresh and access tokens by Key Vault secret identifier URL.

Consumers call this on every request, so a cached answer costs a dict lookup and a clock
compare, with no lock. An entry is fresh for one refresh interval, so a process makes at most
one vault request per interval per secret; the first call after that starts one background
refresh and keeps answering from the cache for up to a quarter interval more, so callers only
wait when an entry has gone unused past that (or was never fetched). One fetch per key is
ever in flight; concurrent callers of a cold key wait for that one fetch.

A refusal (Entra refused the token, the secret is missing or disabled, the identity has no
role) is remembered for FAILURE_TTL seconds, so a consumer calling in a loop costs Entra and the
vault one attempt per window, not one per call. When Entra refuses the cached refresh token,
the vault is read once more, past the cache, before the refusal is raised: an admin may have
consented again since, and the new token is then used at once. Errors name the URL (or the
host) and the cause; a host that does not exist or does not listen fails at once, without
retries, as InvalidInput; one that does not answer in time is a TransientFailure.

Consumers hold read-only roles: nothing here writes to the vault. The new refresh token that
Entra returns with each access token is dropped; rotation is the broker's job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from broker.credentials import CPV, CS_PREFIX, RT_PREFIX
from broker.errors import (
    AccessDenied,
    BrokerError,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    SettingsError,
    TransientFailure,
)
from broker.logs import get_logger, redact

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from broker.settings import Settings

STALE_FRACTION = 0.25  # of the interval: how long a due entry is still served while it refreshes
RETRY_AFTER_FAILURE = 5.0  # seconds before a failed background refresh is tried again
ACCESS_TOKEN_MARGIN = 300.0  # refresh access tokens this long before Entra's expiry
FAILURE_TTL = 2.0  # seconds a refusal is answered from memory (bounds calls and re-consent lag)
MSAL_TIMEOUT = 30.0
log = get_logger(__name__)


class _Entry(NamedTuple):
    value: str
    fresh_until: float  # monotonic; served without a second thought until then
    usable_until: float  # served (refreshing in the background) until then
    tags: dict[str, str]


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None


class _Config(NamedTuple):
    authority_host: str
    cpv_client_id: str
    cpv_client_secret: str


class TokenResolver:
    """Resolve tokens by secret identifier URL; safe to share across threads.

    `credential` authenticates to Key Vault (DefaultAzureCredential by default); `settings`
    supplies the authority host and the CPV app for access tokens (else BROKER_* variables
    from the environment or .env); `refresh_interval` bounds how stale a refresh token may be;
    other keyword arguments go to each vault's `SecretClient` (`retry_total`, timeouts, hooks).

    Permissions: the identity needs "Key Vault Secrets User" on the secret `rt-<id>` (scope
    `<vault resource id>/secrets/rt-<id>`), and on `cs-<id>` for a credential with the partner's
    own app. Nothing here writes to a vault.
    """

    def __init__(self, credential: TokenCredential | None = None, *,
                 settings: Settings | None = None, refresh_interval: float = 300.0,
                 **client_kwargs: Any) -> None:
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        self.refresh_interval = refresh_interval
        self._credential = credential
        self._settings = settings
        self._client_kwargs = client_kwargs
        self._secrets: dict[str, _Entry] = {}
        self._access: dict[tuple[str, str], _Entry] = {}
        self._flights: dict[Any, _Flight] = {}
        self._failures: dict[Any, tuple[BaseException, float]] = {}  # key -> (error, until)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._apps: dict[tuple[str, str, str], Any] = {}
        self._config: _Config | None = None

    # -- the hot paths -------------------------------------------------------------------------

    def refresh_token(self, url: str) -> str:
        """The refresh token at `url`: the latest version if unversioned, else that version.

        Requires "Key Vault Secrets User" on the secret (`secrets/get`).

        :raises InvalidInput: `url` is not a secret identifier of an `rt-<id>` secret, names a
            version that does not exist, or its host is not found or refuses connections.
        :raises CredentialNotFound: the vault has no such secret.
        :raises NeedsConsent: the version holds no consented token (registered, not consented,
            or disabled).
        :raises AccessDenied: the identity has no role that allows reading the secret, or there
            is no identity to authenticate with; names the role and the scope to ask for.
        :raises TransientFailure: the vault did not answer in time or is throttling; try again.
        """
        entry = self._secrets.get(url)
        if entry is not None and monotonic() < entry[1]:  # [1] is fresh_until, by index: faster
            return entry[0]
        return self._secret_entry(url, RT_PREFIX).value

    def access_token(self, url: str, scope: str) -> str:
        """An access token for `scope`, made from the refresh token at `url` with MSAL.

        Requires what `refresh_token` does, and "Key Vault Secrets User" on `cs-<id>` as well
        for a credential with the partner's own app; for the CPV model, BROKER_CPV_CLIENT_ID and
        BROKER_CPV_CLIENT_SECRET in the settings. The new refresh token Entra returns is dropped.

        :raises NeedsConsent: Entra refused the refresh token (revoked, expired, consent
            withdrawn), even after re-reading the vault; an admin must consent again.
        :raises AppMisconfigured: Entra refused the app (client id or secret); the token is kept.
        :raises SettingsError: the CPV app's client id or secret is not configured.
        :raises InvalidInput: as `refresh_token`, or `scope` is not one scope.
        :raises CredentialNotFound, AccessDenied, TransientFailure: as `refresh_token`.
        """
        key = (url, scope)
        entry = self._access.get(key)
        if entry is not None and monotonic() < entry[1]:
            return entry[0]
        if not scope or not isinstance(scope, str) or " " in scope.strip():
            raise InvalidInput(errors={"scope": "Give one scope, such as "
                                                "https://api.partnercenter.microsoft.com/.default"})
        return self._resolve(self._access, key, lambda: self._fetch_access(url, scope)).value

    def describe(self, url: str) -> dict[str, Any]:
        """The properties of the version a consumer gets at `url`, without its value: which
        version, when obtained and by whom, whether with MFA (`not_before` and `expires_on` as
        datetimes). Not cached: a look, not a hot path."""
        from broker.azure_errors import KEY_VAULT_READER
        from broker.vault import parse_secret_id, vault_errors

        ident = parse_secret_id(url)
        credential_id = ident.name[len(RT_PREFIX):]
        with vault_errors(credential_id, target=KEY_VAULT_READER):
            props = self._client(ident.vault_url).get_secret(ident.name, ident.version).properties
        tags = dict(props.tags or {})
        return {
            "secret_id": props.id,
            "credential_id": tags.get("credential") or credential_id,
            "version": props.version,
            "enabled": bool(props.enabled),
            "status": tags.get("status"),
            "source": tags.get("source"),
            "obtained_at": tags.get("obtained_at"),
            "not_before": props.not_before,
            "expires_on": props.expires_on,
            "tenant_id": tags.get("tenant_id"),
            "client_id": tags.get("client_id"),
            "consented_by": tags.get("consented_by") or None,
            "mfa": tags.get("mfa") == "true",
        }

    def access_token_claims(self, url: str, scope: str) -> dict[str, Any]:
        """What the access token for `scope` says about itself (audience, tenant, user, `amr`).

        Read without checking the signature: the token came from Entra over TLS just now, and
        the broker is not its audience. For showing, never for trusting.
        """
        from broker.identity import unverified_claims

        return unverified_claims(self.access_token(url, scope))

    def close(self) -> None:
        """Close the vault clients (their connection pools); the resolver stays usable."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- caching with one fetch in flight per key -----------------------------------------------

    def _resolve(self, cache: dict, key: Any, fetch: Callable[[], _Entry]) -> _Entry:
        entry = cache.get(key)
        now = monotonic()
        if entry is not None and now < entry.usable_until:
            with self._lock:
                if key not in self._flights:
                    # push freshness out so the hot path stops landing here meanwhile
                    cache[key] = entry._replace(fresh_until=min(entry.usable_until,
                                                                now + RETRY_AFTER_FAILURE))
                    flight = self._flights[key] = _Flight()
                    threading.Thread(target=self._fly, args=(cache, key, fetch, flight, True),
                                     name="token-refresh", daemon=True).start()
            return entry
        failure = self._failures.get(key)
        if failure is not None and now < failure[1]:
            raise failure[0].with_traceback(None)  # the same refusal, a moment ago
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = _Flight()
        if owner:
            self._fly(cache, key, fetch, flight, False)
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.entry

    def _fly(self, cache: dict, key: Any, fetch: Callable[[], _Entry], flight: _Flight,
             background: bool) -> None:
        try:
            flight.entry = cache[key] = fetch()
            self._failures.pop(key, None)
        except BaseException as exc:
            flight.error = exc
            if isinstance(exc, BrokerError) and not isinstance(exc, TransientFailure):
                # refused: answer the same for a moment instead of asking again at every call
                self._failures[key] = (exc, monotonic() + FAILURE_TTL)
            if background and not isinstance(exc, TransientFailure):
                cache.pop(key, None)  # disabled, deleted, refused: stop serving the old value
            if background:
                log.warning("background refresh failed (%s): %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    # -- fetching --------------------------------------------------------------------------------

    def _secret_entry(self, url: str, prefix: str) -> _Entry:
        entry = self._secrets.get(url)
        if entry is not None and monotonic() < entry.fresh_until:
            return entry
        return self._resolve(self._secrets, url, lambda: self._fetch_secret(url, prefix))

    def _fetch_secret(self, url: str, prefix: str) -> _Entry:
        from broker.vault import parse_secret_id

        ident = parse_secret_id(url)
        # Key Vault's names are case-insensitive: `RT-contoso` is `rt-contoso`
        if not ident.name.lower().startswith(prefix) or len(ident.name) <= len(prefix):
            raise InvalidInput(errors={"url": f"Not a broker secret: expected {prefix}<id>."})
        credential_id = ident.name[len(prefix):].lower()
        secret = self._read(url, ident, credential_id)
        tags = dict(secret.properties.tags or {})
        if prefix == RT_PREFIX and (
                tags.get("status") == "pending-consent" or secret.value == "pending-consent"):
            raise NeedsConsent(f"{url}: {credential_id} has no consented token yet.")
        redact.register(secret.value)
        now = monotonic()
        return _Entry(secret.value, now + self.refresh_interval,
                      now + self.refresh_interval * (1 + STALE_FRACTION), tags)

    def _read(self, url: str, ident: Any, credential_id: str) -> Any:
        """`get_secret`, its failures told in a consumer's terms: the URL, the host, the cause."""
        from broker.azure_errors import KEY_VAULT_READER
        from broker.vault import vault_errors

        client = self._client(ident.vault_url)
        host = urlsplit(url).netloc
        try:
            with vault_errors(credential_id, target=KEY_VAULT_READER):
                return client.get_secret(ident.name, ident.version)
        except CredentialNotFound:
            if ident.version and self._exists(client, ident.name, credential_id):
                raise InvalidInput(
                    f"{url}: the secret {ident.name} has no version {ident.version}.",
                    errors={"url": f"No version {ident.version} of {ident.name}."},
                    hint="Use the versionless URL for the latest token, or a version that "
                         "exists (`broker credentials show <id>` lists them).") from None
            raise CredentialNotFound(credential_id, f"{url}: the vault at {host} has no "
                                     f"secret {ident.name}.") from None
        except BrokerError as exc:
            raise _in_consumer_terms(exc, url, host, ident.name.lower()) from exc.__cause__

    def _exists(self, client: Any, name: str, credential_id: str) -> bool:
        """Whether the secret has any version (properties only: no token is read)."""
        from broker.azure_errors import KEY_VAULT_READER
        from broker.vault import vault_errors

        try:
            with vault_errors(credential_id, target=KEY_VAULT_READER):
                next(iter(client.list_properties_of_secret_versions(name)), None)
        except CredentialNotFound:
            return False
        except BrokerError:
            return True  # it may well exist; say what was asked for
        return True

    def _fetch_access(self, url: str, scope: str) -> _Entry:
        stored = self._secret_entry(url, RT_PREFIX)
        try:
            return self._redeem(url, scope, stored)
        except NeedsConsent:
            # Entra refused the token we hold; an admin may have consented again since it was
            # read, so read the vault once more, past the cache, before giving up
            fresh = self._fetch_secret(url, RT_PREFIX)
            with self._lock:
                self._secrets[url] = fresh
                self._failures.pop(url, None)
            if fresh.value == stored.value:
                raise
            return self._redeem(url, scope, fresh)

    def _redeem(self, url: str, scope: str, stored: _Entry) -> _Entry:
        refresh_token, tags = stored.value, stored.tags
        tenant = tags.get("tenant_id")
        if not tenant:
            raise InvalidInput(errors={"url": "This secret carries no tenant_id tag; it was "
                                              "not written by the broker."})
        client_id, secret = self._app_credentials(url, tags)
        app = self._app(f"{self._conf().authority_host}/{tenant}", client_id, secret)
        try:
            result = _msal_call(lambda: app.acquire_token_by_refresh_token(refresh_token,
                                                                           scopes=[scope]))
            if "access_token" not in result:
                from broker.identity import classify

                raise classify(result)
        except BrokerError as exc:
            raise _in_consumer_terms(exc, url, None) from exc.__cause__
        now = monotonic()
        lifetime = float(result.get("expires_in") or 3600)
        margin = min(ACCESS_TOKEN_MARGIN, lifetime / 4)
        return _Entry(result["access_token"], now + lifetime - 2 * margin,
                      now + lifetime - margin, {})

    def _app_credentials(self, url: str, tags: dict[str, str]) -> tuple[str, str]:
        client_id = tags.get("client_id") or CPV
        if client_id != CPV:
            from broker.vault import parse_secret_id

            ident = parse_secret_id(url)
            cs_url = f"{ident.vault_url}/secrets/{CS_PREFIX}{ident.name[len(RT_PREFIX):]}"
            return client_id, self._secret_entry(cs_url, CS_PREFIX).value
        conf = self._conf()
        if not conf.cpv_client_id or not conf.cpv_client_secret:
            raise SettingsError("BROKER_CPV_CLIENT_ID", "BROKER_CPV_CLIENT_ID and "
                                "BROKER_CPV_CLIENT_SECRET are needed for CPV-model credentials.")
        return conf.cpv_client_id, conf.cpv_client_secret

    def _client(self, vault_url: str) -> Any:
        client = self._clients.get(vault_url)
        if client is None:
            from broker.transport import FailFastRetry
            from broker.vault import RETRY_TOTAL, secret_client

            with self._lock:
                client = self._clients.get(vault_url)
                if client is None:
                    if self._credential is None:
                        from azure.identity import DefaultAzureCredential

                        self._credential = DefaultAzureCredential()
                    kwargs = {"retry_total": RETRY_TOTAL, **self._client_kwargs}
                    # a host that is not found or refuses connections is not retried
                    kwargs.setdefault("retry_policy", FailFastRetry(
                        **{k: v for k, v in kwargs.items() if k.startswith("retry_")}))
                    client = self._clients[vault_url] = secret_client(
                        vault_url, self._credential, **kwargs)
        return client

    def _app(self, authority: str, client_id: str, secret: str) -> Any:
        key = (authority, client_id, secret)
        app = self._apps.get(key)
        if app is None:
            import msal

            from broker.identity import is_microsoft_host

            microsoft = is_microsoft_host(authority)
            app = _msal_call(lambda: msal.ConfidentialClientApplication(
                client_id, client_credential=secret, authority=authority, timeout=MSAL_TIMEOUT,
                instance_discovery=None if microsoft else False))
            with self._lock:
                app = self._apps.setdefault(key, app)
        return app

    def _conf(self) -> _Config:
        if self._config is None:
            s = self._settings
            if s is not None:
                self._config = _Config(s.authority_host, s.cpv_client_id, s.cpv_client_secret)
            else:  # a consumer: three settings, by the broker's own declarations
                from broker.settings import read_settings

                self._config = _Config(**read_settings(_Config._fields))
        return self._config


def _msal_call(call: Callable[[], Any]) -> Any:
    """Run MSAL; its transport, discovery and error-body failures leave as broker errors."""
    import requests
    from msal.exceptions import MsalServiceError

    from broker.azure_errors import from_msal

    try:
        return call()
    except (requests.RequestException, MsalServiceError, ValueError) as exc:
        raise from_msal(exc) from None


def _in_consumer_terms(exc: BrokerError, url: str, host: str | None,
                       secret_name: str | None = None) -> BrokerError:
    """The error with the URL in its message; a network failure says which host and why:
    one that is not found or refuses connections is InvalidInput (retrying cannot help), one
    that did not answer in time a TransientFailure. A refusal names the secret as the scope to
    ask for (a consumer's role is on the secret, not the vault), unless Key Vault named the
    exact resource id."""
    cause = exc.__cause__
    if isinstance(exc, AccessDenied) and secret_name and not exc.scope.startswith("/"):
        return AccessDenied(f"{url}: {exc}", role=exc.role, action=exc.action,
                            scope=f"<resource id of the vault {host}>/secrets/{secret_name}")
    if host is not None and cause is not None:
        from broker.transport import timed_out, unreachable

        why = unreachable(cause)
        if why:
            return InvalidInput(f"{url}: the vault host {host} {why}.",
                                errors={"url": f"The vault host {host} {why}."},
                                hint="Check the vault name and port in the URL; nothing was "
                                     "retried, as retrying cannot help.")
        if timed_out(cause):
            return TransientFailure(f"{url}: the vault at {host} did not answer in time.")
    if url not in str(exc):
        exc.args = (f"{url}: {exc}",)
    return exc
