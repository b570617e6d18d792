"""Who the operator is in each sign-in mode, and the gate in front of every operator page.

`local` and `entra` keep the operator in the signed session cookie for at most
OPERATOR_LIFETIME, with a session id that signing out records as revoked (`sessions.py`), so a
copy of the cookie is refused afterwards. `easyauth` trusts App Service's
`X-MS-CLIENT-PRINCIPAL*` headers, and only when App Service authentication is in front of the
site: only then does the platform strip those headers from what the client sends. It tells by
the variables App Service sets for it (`WEBSITE_AUTH_ENABLED=True`, `WEBSITE_AUTH_DEFAULT_PROVIDER`
naming Microsoft Entra ID), the check Microsoft.Identity.Web makes; without them every operator
page answers the "almost there" page naming what is missing, whatever the headers say.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from flask import (
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from consent_web import sessions, site

OPERATOR_LIFETIME = timedelta(hours=8)
LOCAL_LINK_LIFETIME = timedelta(minutes=10)
SESSION_KEY = "operator"
MODES = ("local", "entra", "easyauth")
# what App Service sets when its authentication (with Microsoft Entra ID) is in front of the app
APP_SERVICE_AUTH_VARIABLES = ("WEBSITE_AUTH_ENABLED", "WEBSITE_AUTH_DEFAULT_PROVIDER")
ENTRA_PROVIDERS = ("azureactivedirectory", "aad")

# reachable without an operator: the partner admin's pages, the OAuth callback, health, sign-in
PUBLIC_ENDPOINTS = frozenset({
    "static", "health.healthz", "consent.callback", "consent.done", "invites.landing",
    "invites.start",
})
PUBLIC_BLUEPRINTS = frozenset({"auth"})

GROUP_CLAIMS = ("groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups")
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class Operator:
    name: str
    via: str


def sign_in(operator: Operator) -> None:
    """Start a fresh operator session (nothing from before sign-in survives it)."""
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = {"name": operator.name, "via": operator.via, "at": int(time.time()),
                            "sid": secrets.token_urlsafe(18)}


def sign_out() -> None:
    """End the session here and everywhere: its id is recorded as revoked before the cookie
    is cleared, so a copy of the cookie is refused from now on."""
    data = session.get(SESSION_KEY)
    session.clear()
    if isinstance(data, dict) and isinstance(data.get("sid"), str):
        signed_in_at = data.get("at") if isinstance(data.get("at"), int) else int(time.time())
        try:
            revocations().revoke(data["sid"], signed_in_at + OPERATOR_LIFETIME.total_seconds())
        except Exception as exc:  # the browser's cookie is gone; say so in the log
            current_app.logger.warning("sign-out could not be recorded server-side (%s); a copy "
                                       "of the cookie stays valid until it expires",
                                       type(exc).__name__)


def current() -> Operator | None:
    settings = site.get_settings()
    if settings.operator_auth == "easyauth":
        if app_service_auth_missing():
            return None
        return from_easyauth(request.headers, settings)
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or data.get("via") != settings.operator_auth:
        return None
    signed_in_at, name, sid = data.get("at"), data.get("name"), data.get("sid")
    if not isinstance(signed_in_at, int) or not isinstance(name, str) or \
            not isinstance(sid, str):
        return None
    if time.time() - signed_in_at > OPERATOR_LIFETIME.total_seconds():
        return None
    if revocations().is_revoked(sid):
        return None
    return Operator(name, settings.operator_auth)


def revocations() -> sessions.Revocations:
    """The app's record of signed-out sessions, built from settings on first use."""
    found = current_app.extensions.get("revocations")
    if found is None:
        found = current_app.extensions["revocations"] = sessions.from_settings(
            site.get_settings())
    return found


def app_service_auth_missing(environ: Mapping[str, str] | None = None) -> list[str]:
    """What App Service sets when its authentication is on, and this process does not see.

    `APP_SERVICE_AUTH_ENVIRON` in the app's config replaces the environment (tests)."""
    if environ is None:
        environ = current_app.config.get("APP_SERVICE_AUTH_ENVIRON") or os.environ
    missing = []
    if (environ.get("WEBSITE_AUTH_ENABLED") or "").strip().lower() != "true":
        missing.append("App Service authentication switched on (WEBSITE_AUTH_ENABLED=True, set "
                       "by App Service, not by you)")
    if (environ.get("WEBSITE_AUTH_DEFAULT_PROVIDER") or "").strip().lower() \
            not in ENTRA_PROVIDERS:
        missing.append("Microsoft Entra ID as its identity provider "
                       "(WEBSITE_AUTH_DEFAULT_PROVIDER=AzureActiveDirectory)")
    return missing


def allowed(groups: Iterable[str], roles: Iterable[str], settings) -> bool:
    """Membership of the operator group, or the operator app role, whichever is configured."""
    group, role = settings.operator_group_id, settings.operator_role
    return bool((group and group in set(groups)) or (role and role in set(roles)))


def from_easyauth(headers: Mapping[str, str], settings) -> Operator | None:
    """The operator App Service signed in, if in the operators' group or role (never anyone
    of the tenant: without a group or role configured, nobody is an operator)."""
    name = headers.get("X-MS-CLIENT-PRINCIPAL-NAME")
    if not name:
        return None
    claims = _principal_claims(headers.get("X-MS-CLIENT-PRINCIPAL", ""))
    groups = [c["val"] for c in claims if c["typ"] in GROUP_CLAIMS]
    roles = [c["val"] for c in claims if c["typ"] in ROLE_CLAIMS]
    if not allowed(groups, roles, settings):
        abort(403, description=f"{name} is signed in but is not in the operators' group or "
                               "role. Ask an administrator to add you.")
    return Operator(name, "easyauth")


def _principal_claims(header: str) -> list[dict[str, str]]:
    """The claims of App Service's base64 JSON principal; a malformed header is a 403."""
    try:
        principal = json.loads(base64.b64decode(header, validate=True))
        claims = [
            {"typ": str(c["typ"]), "val": str(c["val"])} for c in principal["claims"]
        ]
    except (binascii.Error, ValueError, KeyError, TypeError):
        abort(403, description="The App Service sign-in header could not be read.")
    return claims


def require_operator() -> Response | None:
    """before_request: every page outside PUBLIC_* needs a signed-in operator."""
    if request.endpoint is None or site.state().settings is None:
        return None  # routing failed (404/405), or the setup page / health check answers
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        g.operator = _soft_current()
        return None
    operator = current()
    if operator is not None:
        g.operator = operator
        return None
    settings = site.get_settings()
    if settings.operator_auth == "easyauth" and (missing := app_service_auth_missing()):
        # fail closed: without the platform in front, anyone could send the principal headers
        return Response(render_template("setup.html", missing=missing, problem=None,
                                        easyauth=True), 503)
    if request.method in ("GET", "HEAD"):
        target = request.path + (f"?{request.query_string.decode()}" if request.query_string
                                 else "")
        return redirect(url_for("auth.login", next=target))
    abort(401)


def _soft_current() -> Operator | None:
    try:
        return current()
    except HTTPException:
        return None


def safe_next(value: object) -> str:
    """A local path to go back to after sign-in; anything that could leave the site is '/'."""
    if not isinstance(value, str) or len(value) > 2000:
        return "/"
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(ch) < 0x20 for ch in value):
        return "/"
    return value


class LocalSignIn:
    """One-time sign-in links for `local` mode, like Jupyter's token: shown on the console only.

    Only digests are kept, in memory: a link works once, in this process, and for `lifetime`
    (LOCAL_LINK_LIFETIME) after it was issued; an unused link is worthless after that.
    """

    def __init__(self, announce: Callable[[str], None] | None = None, *,
                 lifetime: timedelta = LOCAL_LINK_LIFETIME,
                 clock: Callable[[], float] = time.monotonic):
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self.announce = announce or _print_to_console
        self.lifetime = lifetime.total_seconds()
        self._clock = clock

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._expiry = {d: t for d, t in self._expiry.items() if t > now}
            self._expiry[hashlib.sha256(token.encode()).digest()] = now + self.lifetime
        return token

    def redeem(self, token: object) -> bool:
        if not isinstance(token, str) or not 20 <= len(token) <= 200:
            return False
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            expires = self._expiry.pop(digest, None)
        return expires is not None and self._clock() < expires

    def link(self, public_url: str) -> str:
        """Issue a token and return the sign-in URL that carries it."""
        return f"{public_url.rstrip('/')}/auth/local?token={self.issue()}"


def _print_to_console(link: str) -> None:
    # one write: print() sends the line and its newline separately, and a log line from another
    # thread landing between them cut the link for whoever reads the console
    sys.stderr.write(f"Operator sign-in (one-time link): {link}\n")
    sys.stderr.flush()


def local_sign_in() -> LocalSignIn:
    return current_app.extensions["local_sign_in"]
