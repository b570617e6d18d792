"""Talking to Entra ID, through MSAL only: redeem refresh tokens and run the consent code flow.

Every error body Entra sends is turned into one of our errors by `classify`, the single place
that decides whether a human must consent again, the app is misconfigured, or it is worth a
retry. Messages name the AADSTS code and what to do; they never hold a token, because Entra's
own error text is not copied into them.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalServiceError

from broker.azure_errors import from_msal
from broker.credentials import is_guid
from broker.errors import (
    AppMisconfigured,
    BrokerError,
    ConsentFailed,
    NeedsConsent,
    SettingsError,
    TransientFailure,
)
from broker.reasons import AADSTS

PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
GRAPH_SCOPE = "https://graph.microsoft.com/Directory.Read.All"
ARM_SCOPE = "https://management.azure.com/user_impersonation"

TIMEOUT = (5.0, 30.0)  # connect, read: a hung token endpoint must not hold a lease forever
_MICROSOFT_HOSTS = WELL_KNOWN_AUTHORITY_HOSTS | {"login.microsoft.com", "sts.windows.net"}

_NEEDS_CONSENT = {"invalid_grant", "interaction_required", "consent_required", "login_required"}
_MISCONFIGURED = {"invalid_client", "unauthorized_client"}
# 700007: the refresh token was issued to another app than the credential names, so the
# credential's client id is wrong (the token may be fine for its own app): keep it
_MISCONFIGURED_CODES = {700016, 700007, 7000215, 7000222, 7000221, 90002}
_TRANSIENT = {"temporarily_unavailable", "server_error", "service_unavailable", "timeout"}


@dataclass(frozen=True)
class Redemption:
    """What a token request gave us; held in memory only for as long as it takes to store it."""

    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    claims: dict[str, Any] = field(repr=False)  # the access token's claims
    expires_in: int = 0
    id_token_claims: dict[str, Any] = field(default_factory=dict, repr=False)


def _codes(result: Mapping) -> list[int]:
    codes = result.get("error_codes") or []
    if isinstance(codes, int | str):
        codes = [codes]
    out = []
    for code in codes:
        try:
            out.append(int(code))
        except (TypeError, ValueError):
            continue
    if not out:
        # the authorize redirect carries no error_codes, only "AADSTS65001: ..." in the text
        found = re.search(r"AADSTS(\d+)", str(result.get("error_description") or ""))
        if found:
            out.append(int(found.group(1)))
    return out


def _explain(error: str, codes: list[int], default: tuple[str, str]) -> tuple[str, str]:
    for code in codes:
        if code in AADSTS:
            return f"AADSTS{code}: {AADSTS[code].meaning}", AADSTS[code].action
    label = f"AADSTS{codes[0]}: " if codes else ""
    return f"{label}{default[0]} ({error or 'no error code'})", default[1]


def _code(codes: list[int]) -> str | None:
    """The reason code stored with a status: the first AADSTS code we have words for."""
    known = [c for c in codes if c in AADSTS]
    return f"AADSTS{(known or codes)[0]}" if codes else None


def _retry_after(result: Mapping) -> float | None:
    value = result.get("retry_after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def classify(result: Mapping, *, flow: str = "refresh") -> BrokerError:
    """The one mapping from an Entra error body (or an HTTP failure) to our errors.

    `flow` says where the body came from: "refresh" (a refresh-token redemption), "code" (the
    auth-code exchange at the end of consent) or "authorize" (the error redirect of the sign-in
    page). `result` may carry `status_code` and `retry_after` when the body came with an HTTP
    failure instead of an OAuth error.
    """
    error = str(result.get("error") or "")
    codes = _codes(result)
    status = int(result.get("status_code") or 0)
    suberror = str(result.get("suberror") or "")

    if status == 429 or status >= 500 or error in _TRANSIENT:
        what = f"HTTP {status}" if status else error
        wait = _retry_after(result)
        later = f" in {wait:g} s" if wait else " later"
        return TransientFailure(
            f"Entra ID is unavailable for now ({what}); try again{later}.",
            retry_after=wait,
            hint="nothing to do: the broker retries and leaves it for the next run",
        )

    if flow == "authorize":
        return _authorize_error(error, codes)

    if error in _MISCONFIGURED or set(codes) & _MISCONFIGURED_CODES:
        message, todo = _explain(error, codes, ("the app is misconfigured", "fix the app"))
        return AppMisconfigured(
            f"Entra ID refused the app: {message}. The stored token is kept.", hint=todo,
            code=_code(codes),
        )

    if flow == "code":
        message, todo = _explain(
            error, codes, ("the authorization code was refused", "start the consent again")
        )
        if 50076 in codes or 50079 in codes:
            return ConsentFailed("no-mfa", f"Sign-in without MFA: {message}.", hint=todo)
        if 50105 in codes:
            return ConsentFailed(
                "not-admin-agent", f"The account is not an Admin Agent: {message}.",
                hint="sign in with an account in the partner tenant's AdminAgents group")
        if 65001 in codes or suberror == "consent_required":
            return ConsentFailed(
                "admin-consent-required", f"Consent is missing: {message}.",
                hint="sign in as a Global Administrator and tick 'Consent on behalf of your "
                     "organization'",
            )
        return ConsentFailed(
            "code-rejected", f"Entra ID refused the authorization code: {message}.",
            hint="start the consent again from the link; a code works once and expires quickly",
        )

    if error in _NEEDS_CONSENT:
        message, todo = _explain(
            error, codes, ("the grant is no longer valid", "an admin must consent again")
        )
        return NeedsConsent(f"Entra ID refused the refresh token: {message}.", hint=todo,
                            code=_code(codes))

    message, todo = _explain(
        error, codes, ("the token request was refused", "check the app's registration")
    )
    return AppMisconfigured(
        f"Entra ID refused the request: {message}. The stored token is kept.", hint=todo,
        code=_code(codes),
    )


def _authorize_error(error: str, codes: list[int]) -> ConsentFailed:
    """The error redirect of the sign-in page: the user never got as far as a code."""
    if error == "access_denied" and not codes:
        return ConsentFailed(
            "cancelled", "The sign-in was cancelled.",
            hint="open the consent link again and accept the permissions",
        )
    message, todo = _explain(error, codes, ("the sign-in did not complete", "try again"))
    if 50076 in codes or 50079 in codes:
        return ConsentFailed("no-mfa", f"Sign-in without MFA: {message}.", hint=todo)
    if error == "consent_required" or {65001, 90094, 90095} & set(codes):
        return ConsentFailed(
            "admin-consent-required", f"Admin consent is required: {message}.",
            hint="sign in as a Global Administrator and tick 'Consent on behalf of your "
                 "organization'",
        )
    if 50105 in codes:
        return ConsentFailed(
            "not-admin-agent", f"The account is not an Admin Agent: {message}.",
            hint="sign in with an account in the partner tenant's AdminAgents group")
    if error == "access_denied" and codes and 65004 in codes:
        return ConsentFailed("cancelled", "The consent was declined.",
                             hint="open the consent link again and accept the permissions")
    if error == "access_denied":
        return ConsentFailed(
            "not-admin-agent", f"The account may not consent for this partner: {message}.",
            hint="sign in with an account that is an Admin Agent of the partner tenant",
        )
    return ConsentFailed("cancelled", f"The sign-in failed: {message}.", hint=todo)


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a JWT without checking its signature.

    Only for tokens that came straight from the token endpoint over TLS in this same request:
    the broker is not the audience of these access tokens and cannot (and need not) verify them.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def is_microsoft_host(authority_host: str) -> bool:
    return (urlsplit(authority_host).hostname or "").lower() in _MICROSOFT_HOSTS


DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/common/discovery/instance")
DISCOVERY_TTL_S = 24 * 3600  # what MSAL's own http cache keeps a discovery document for
DISCOVERY_ENTRIES = 1024  # authorities (tenants) remembered per process


class _RecordingHttpClient:
    """MSAL's http client seam: a pooled session with timeouts that remembers, per thread, the
    status and Retry-After of the last response, which MSAL itself does not pass on.

    It also keeps successful discovery documents (an authority's OpenID configuration, instance
    discovery) for the process: each MSAL application is built fresh per operation (so its
    token cache never outlives the call and its throttle cache never replays an old 429 or 503
    into the broker's own backoff), and without this each one would fetch its authority's
    discovery again, one extra round trip per rotation. Only 2xx GETs of discovery paths are
    kept; token requests always go out.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._last = threading.local()
        self._discovery: OrderedDict[str, tuple[float, requests.Response]] = OrderedDict()
        self._discovery_lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    @property
    def session(self) -> requests.Session:
        """One pooled session per thread (rotations run on a thread pool)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def last(self) -> tuple[int, float | None]:
        return getattr(self._last, "status", 0), getattr(self._last, "retry_after", None)

    def reset(self) -> None:
        self._last.status, self._last.retry_after = 0, None

    def _remember(self, response: requests.Response) -> requests.Response:
        self._last.status = response.status_code
        value = response.headers.get("Retry-After")
        try:
            self._last.retry_after = float(value) if value is not None else None
        except ValueError:
            self._last.retry_after = None
        return response

    def get(self, url, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        key = _discovery_key(url, kwargs.get("params"))
        if key is None:
            return self._remember(self.session.get(url, **kwargs))
        with self._discovery_lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        # one fetch per authority at a time: threads starting together wait for the first
        with fetching:
            now = time.monotonic()
            with self._discovery_lock:
                cached = self._discovery.get(key)
                if cached is not None and now - cached[0] < DISCOVERY_TTL_S:
                    self._discovery.move_to_end(key)
                    return self._remember(cached[1])
            response = self._remember(self.session.get(url, **kwargs))
            if 200 <= response.status_code < 300:
                with self._discovery_lock:
                    self._discovery[key] = (now, response)
                    while len(self._discovery) > DISCOVERY_ENTRIES:
                        old, _ = self._discovery.popitem(last=False)
                        self._fetching.pop(old, None)
            return response

    def post(self, url, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        return self._remember(self.session.post(url, **kwargs))

    def close(self) -> None:  # MSAL may call it; the session outlives one app
        pass


def _discovery_key(url: str, params) -> str | None:
    path = urlsplit(url).path.lower()
    if not any(path.endswith(p) for p in DISCOVERY_PATHS):
        return None
    return f"{url.lower()}?{sorted((params or {}).items())!r}"


class Identity:
    """MSAL confidential clients for the credentials' apps (the CPV app or a partner's own)."""

    def __init__(self, settings, vault) -> None:
        self.settings = settings
        self.vault = vault
        self._http = _RecordingHttpClient()
        self._tenants: dict[str, str] = {}
        self._tenants_lock = threading.Lock()

    # -- the MSAL application --------------------------------------------------------------

    def authority(self, credential) -> str:
        return f"{self.settings.authority_host.rstrip('/')}/{credential.tenant_id}"

    def _client_credentials(self, credential, client_secret: str | None = None
                            ) -> tuple[str, str]:
        if credential.client_id:
            return credential.client_id, (client_secret
                                          or self.vault.read_client_secret(credential.id))
        if not self.settings.cpv_client_id or not self.settings.cpv_client_secret:
            raise SettingsError(
                "BROKER_CPV_CLIENT_ID",
                "BROKER_CPV_CLIENT_ID and BROKER_CPV_CLIENT_SECRET are required for CPV-model "
                "credentials.",
                hint="set them to the CPV app's client id and secret, or give the credential "
                     "its own app",
            )
        return self.settings.cpv_client_id, self.settings.cpv_client_secret

    def _app(self, credential, client_secret: str | None = None
             ) -> msal.ConfidentialClientApplication:
        # A fresh application per operation: MSAL's in-memory token cache then never outlives
        # the call, and its response throttle cache does not replay an old 503 to our own
        # backoff (which honours Retry-After itself). Its discovery comes from our http
        # client's per-process cache, so a fresh application costs no round trip.
        client_id, secret = self._client_credentials(credential, client_secret)
        microsoft = is_microsoft_host(self.settings.authority_host)
        return self._guard(
            lambda: msal.ConfidentialClientApplication(
                client_id,
                client_credential=secret,
                authority=self.authority(credential),
                http_client=self._http,
                instance_discovery=None if microsoft else False,
            ),
            flow="refresh",
        )

    def _guard(self, call, *, flow: str):
        """Run an MSAL call; its failures leave as broker errors (`broker.azure_errors`), told
        the status of the last response, which MSAL itself does not pass on."""
        self._http.reset()
        try:
            return call()
        except (requests.Timeout, requests.ConnectionError, MsalServiceError, ValueError,
                RuntimeError) as exc:
            status, retry_after = self._http.last()
            raise from_msal(exc, status=status, retry_after=retry_after,
                            code_flow=flow == "code",
                            authority=self.settings.authority_host) from None

    # -- flows ------------------------------------------------------------------------------

    def redeem(self, credential, refresh_token: str, scopes: Sequence[str] | None = None, *,
               client_secret: str | None = None) -> Redemption:
        """Exchange a refresh token for a new one (and an access token): this is the renewal.
        `client_secret` tries a partner app's new secret before it is stored."""
        app = self._app(credential, client_secret)
        result = self._guard(
            lambda: app.acquire_token_by_refresh_token(
                refresh_token, scopes=list(scopes or [PARTNER_CENTER_SCOPE])
            ),
            flow="refresh",
        )
        return self._redemption(result, flow="refresh")

    def begin(self, credential, redirect_uri: str, *, scopes: Sequence[str],
              prompt: str | None = None, login_hint: str | None = None) -> dict:
        """MSAL's auth-code flow (PKCE S256, state and nonce are MSAL's)."""
        app = self._app(credential)

        def initiate() -> dict:
            # The code comes back in the redirect's query (MSAL warns that it prefers
            # form_post): the consent site's callback is a GET so that its SameSite=Lax session
            # cookie, which holds this flow, comes back with it. The code is single-use,
            # short-lived and useless without the PKCE verifier that never leaves the server.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="response_mode='form_post'")
                return app.initiate_auth_code_flow(
                    list(scopes), redirect_uri=redirect_uri, prompt=prompt,
                    login_hint=login_hint,
                )

        return self._guard(initiate, flow="refresh")

    def finish(self, credential, flow: dict, params: Mapping[str, str]) -> Redemption:
        """Exchange the code for tokens; MSAL checks state, PKCE and the id token's nonce."""
        if params.get("error"):
            raise classify(params, flow="authorize")
        scopes = list(flow.get("broker_scopes") or [PARTNER_CENTER_SCOPE])
        app = self._app(credential)
        result = self._guard(
            # a token request may name one resource only; the others were consented to at
            # sign-in and the refresh token works for them too
            lambda: app.acquire_token_by_auth_code_flow(
                {k: v for k, v in flow.items() if not k.startswith("broker_")},
                dict(params), scopes=scopes[:1],
            ),
            flow="code",
        )
        return self._redemption(result, flow="code")

    def _redemption(self, result: Mapping, *, flow: str) -> Redemption:
        if "error" in result:
            # MSAL hands back a 429's JSON body without its status or Retry-After header
            status, retry_after = self._http.last()
            raise classify({**result, "status_code": status, "retry_after": retry_after},
                           flow=flow)
        refresh_token = result.get("refresh_token")
        access_token = result.get("access_token")
        if not refresh_token or not access_token:
            raise AppMisconfigured(
                "Entra ID returned no refresh token.",
                hint="the app must be allowed the offline_access permission",
            )
        return Redemption(
            refresh_token=refresh_token,
            access_token=access_token,
            claims=unverified_claims(access_token),
            expires_in=int(result.get("expires_in") or 0),
            id_token_claims=dict(result.get("id_token_claims") or {}),
        )

    # -- tenants ----------------------------------------------------------------------------

    def tenant_guid(self, tenant: str) -> str:
        """The tenant's GUID, from the authority's OIDC discovery when given a domain."""
        if is_guid(tenant.lower()):
            return tenant.lower()
        key = tenant.lower()
        with self._tenants_lock:
            if key in self._tenants:
                return self._tenants[key]
        url = (f"{self.settings.authority_host.rstrip('/')}/{key}"
               "/v2.0/.well-known/openid-configuration")
        try:
            response = self._http.get(url, timeout=TIMEOUT)
        except (requests.Timeout, requests.ConnectionError):
            raise TransientFailure("Entra ID could not be reached to look up the tenant.",
                                   hint="try again") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise classify({"status_code": response.status_code})
        if response.status_code != 200:
            raise AppMisconfigured(f"The tenant {tenant!r} is not known to Entra ID.",
                                   hint="check the credential's tenant id or domain")
        try:
            issuer = str(response.json().get("issuer", ""))
        except ValueError:
            issuer = ""
        found = _GUID_IN.search(issuer)
        if not found:
            raise AppMisconfigured(f"Could not find the GUID of tenant {tenant!r}.",
                                   hint="use the tenant's GUID instead of its domain")
        guid = found.group(0).lower()
        with self._tenants_lock:
            self._tenants[key] = guid
        return guid


_GUID_IN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
