"""Who the operator is in each sign-in mode, and the gate in front of every operator page.

`local` and `entra` keep the operator in the signed session cookie for at most
OPERATOR_LIFETIME; `easyauth` trusts App Service's `X-MS-CLIENT-PRINCIPAL*` headers, and only in
that mode, because only there does App Service strip them from what the client sends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from flask import Response, abort, current_app, g, redirect, request, session, url_for
from werkzeug.exceptions import HTTPException

from consent_web import site

OPERATOR_LIFETIME = timedelta(hours=8)
SESSION_KEY = "operator"
MODES = ("local", "entra", "easyauth")

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
    session[SESSION_KEY] = {"name": operator.name, "via": operator.via, "at": int(time.time())}


def sign_out() -> None:
    session.clear()


def current() -> Operator | None:
    settings = site.get_settings()
    if settings.operator_auth == "easyauth":
        return from_easyauth(request.headers, settings)
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or data.get("via") != settings.operator_auth:
        return None
    signed_in_at = data.get("at")
    name = data.get("name")
    if not isinstance(signed_in_at, int) or not isinstance(name, str):
        return None
    if time.time() - signed_in_at > OPERATOR_LIFETIME.total_seconds():
        return None
    return Operator(name, settings.operator_auth)


def allowed(groups: Iterable[str], roles: Iterable[str], settings) -> bool:
    """Membership of the operator group, or the operator app role, whichever is configured."""
    group, role = settings.operator_group_id, settings.operator_role
    return bool((group and group in set(groups)) or (role and role in set(roles)))


def from_easyauth(headers: Mapping[str, str], settings) -> Operator | None:
    name = headers.get("X-MS-CLIENT-PRINCIPAL-NAME")
    if not name:
        return None
    if settings.operator_group_id or settings.operator_role:
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

    Only digests are kept, in memory: a link works once, in this process.
    """

    def __init__(self, announce: Callable[[str], None] | None = None):
        self._digests: set[bytes] = set()
        self._lock = threading.Lock()
        self.announce = announce or _print_to_console

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._digests.add(hashlib.sha256(token.encode()).digest())
        return token

    def redeem(self, token: object) -> bool:
        if not isinstance(token, str) or not 20 <= len(token) <= 200:
            return False
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            if digest in self._digests:
                self._digests.discard(digest)
                return True
        return False

    def link(self, public_url: str) -> str:
        """Issue a token and return the sign-in URL that carries it."""
        return f"{public_url.rstrip('/')}/auth/local?token={self.issue()}"


def _print_to_console(link: str) -> None:
    print(f"Operator sign-in (one-time link): {link}", file=sys.stderr, flush=True)


def local_sign_in() -> LocalSignIn:
    return current_app.extensions["local_sign_in"]
