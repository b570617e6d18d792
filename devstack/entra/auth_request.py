"""An authorization request, validated the way Entra does before showing any page.

Errors that make the redirect URI untrustworthy (unknown tenant or app, a redirect URI that is
not registered) are shown as a page (`PageError`); every later error goes back to the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import Entra, TenantPath
from .directory import App
from .errors import EntraError, malformed, missing
from .scopes import ScopeSet, parse

MAX_PARAM = 4096
PROMPTS = frozenset({"login", "none", "consent", "select_account", "admin_consent"})
RESPONSE_MODES = ("query", "fragment", "form_post")


@dataclass(frozen=True)
class AuthRequest:
    path: TenantPath
    app: App
    redirect_uri: str
    response_mode: str
    state: str | None
    nonce: str | None
    scopes: ScopeSet
    code_challenge: str | None
    code_challenge_method: str
    prompts: frozenset[str]
    login_hint: str | None
    domain_hint: str | None
    client_info: bool
    max_age: int | None
    require_mfa: bool


    def wanted(self) -> set[tuple[str, str]]:
        return {(r.resource.uri, p) for r in self.scopes.resources for p in r.permissions}


class PageError(Exception):
    """An error shown to the person at the browser, never redirected."""

    def __init__(self, error: EntraError, app: App | None = None):
        super().__init__(str(error))
        self.error, self.app = error, app


def parse_request(entra: Entra, tenant: str, params) -> AuthRequest | tuple:
    """Validate an authorization request; PageError before the redirect URI is trusted, then
    ((redirect_uri, response_mode), error params) for errors the client should receive."""
    try:
        path = entra.tenant_path(tenant)
    except EntraError as exc:
        raise PageError(exc) from exc

    def get(name: str) -> str | None:
        value = params.get(name)
        if value is not None and len(value) > MAX_PARAM:
            raise PageError(malformed(f"The '{name}' parameter is too long."))
        return value

    client_id = get("client_id")
    if not client_id:
        raise PageError(missing("client_id"))
    try:
        client = entra.client(client_id, path)
    except EntraError as exc:
        raise PageError(exc) from exc
    redirect_uri = get("redirect_uri")
    if not redirect_uri:
        raise PageError(EntraError(900971, "invalid_request", "No reply address provided."),
                        client)
    if not client.matches_redirect(redirect_uri):
        raise PageError(EntraError(
            50011, "invalid_request",
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            f"redirect URIs configured for the application '{client.app_id}'. Make sure the "
            "redirect URI sent in the request matches one added to your application in the "
            "Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more "
            "about how to fix this."), client)
    response_mode = get("response_mode") or "query"
    state = get("state")
    target = (redirect_uri, response_mode if response_mode in RESPONSE_MODES else "query")
    try:
        if response_mode not in RESPONSE_MODES:
            raise EntraError(70007, "invalid_request",
                             f"The response_mode '{response_mode}' is not supported.")
        return _validate(entra, path, client, redirect_uri, response_mode, state, get)
    except PageError:
        raise
    except EntraError as exc:
        error = exc.as_params(entra.now(), entra.authority)
        return target, error | ({"state": state} if state is not None else {})


def _validate(entra: Entra, path: TenantPath, client: App, redirect_uri: str,
              response_mode: str, state: str | None, get) -> AuthRequest:
    response_type = get("response_type")
    if not response_type:
        raise missing("response_type")
    if response_type != "code":
        raise EntraError(70005, "unsupported_response_type",
                         f"The response_type '{response_type[:50]}' is not supported for this "
                         "application; use 'code'.")
    scope = get("scope")
    if not scope or not scope.strip():
        raise missing("scope")
    scopes = parse(entra.directory, scope, path.display)
    scopes = ScopeSet(scopes.oidc, tuple(r.expand(client) for r in scopes.resources))
    if not scopes.resources and "openid" not in scopes.oidc:
        raise EntraError(70011, "invalid_scope",
                         "The provided value for the input parameter 'scope' is not valid. "
                         "Request at least 'openid' or a resource's scope.")
    challenge, method = get("code_challenge"), get("code_challenge_method")
    if method and not challenge:
        raise missing("code_challenge")
    method = method or "plain"  # RFC 7636 4.3: absent means plain, and Entra accepts it
    if challenge:
        if method not in ("plain", "S256"):
            raise malformed(f"The code_challenge_method '{method[:20]}' is not supported; "
                            "use 'S256' or 'plain'.")
        if method == "S256" and (len(challenge) != 43 or not _is_base64url(challenge)):
            raise EntraError(501491, "invalid_request", "Invalid size of Code_Challenge "
                             "parameter.")
        if method == "plain" and not (43 <= len(challenge) <= 128):
            raise EntraError(501491, "invalid_request", "Invalid size of Code_Challenge "
                             "parameter.")
    prompts = frozenset((get("prompt") or "").split())
    if prompts - PROMPTS or ("none" in prompts and len(prompts) > 1):
        raise EntraError(90023, "invalid_request",
                         f"Invalid prompt value '{' '.join(sorted(prompts))[:50]}'.")
    max_age = get("max_age")
    if max_age is not None and not (max_age.isdigit() and len(max_age) < 10):
        raise EntraError(90100, "invalid_request", "The 'max_age' parameter is not valid.")
    login_hint = (get("login_hint") or "").strip().lower()[:256] or None
    return AuthRequest(
        path=path, app=client, redirect_uri=redirect_uri, response_mode=response_mode,
        state=state, nonce=get("nonce"), scopes=scopes, code_challenge=challenge,
        code_challenge_method=method,
        prompts=prompts, login_hint=login_hint,
        domain_hint=(get("domain_hint") or "").strip()[:256] or None,
        client_info=get("client_info") == "1",
        max_age=int(max_age) if max_age is not None else None,
        require_mfa="mfa" in (get("amr_values") or "").split(),
    )


def _is_base64url(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in text)
