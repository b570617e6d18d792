"""CSRF, a same-origin check, response headers, and sealing of OAuth flows kept in the session.

Flask-WTF's token guards every form. Its Referer check is replaced by an Origin and
Sec-Fetch-Site check, because consent and invite pages send no Referer at all (their URLs carry
one-time values). OAuth flows (state, nonce, PKCE verifier) live in the signed session cookie,
encrypted as well, so the browser carries them without being able to read them.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, Response, abort, current_app, request
from flask_wtf.csrf import CSRFProtect

from consent_web import site

csrf = CSRFProtect()

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# pages whose URLs or referrers could carry something one-time: never send a Referer from them
NO_REFERRER_PREFIXES = ("/invite/", "/consent/", "/auth/")


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    app.extensions["flow_seal"] = FlowSeal(app.secret_key, "oauth-flow")
    app.before_request(_same_origin_only)
    app.after_request(_security_headers)


def _same_origin_only() -> None:
    """Refuse state-changing requests a browser says came from another site."""
    if request.method not in UNSAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        abort(403, description="This form was submitted from another site, so it was refused.")
    origin = request.headers.get("Origin")
    # "null" is what browsers send for a POST from a page with `Referrer-Policy: no-referrer`
    if origin and origin != "null" and origin_of(origin) != origin_of(request.host_url):
        abort(403, description="This form was submitted from another site, so it was refused.")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _security_headers(response: Response) -> Response:
    settings = site.state().settings
    form_targets = "'self'"
    if settings is not None:
        # a POST that answers with a redirect to the authority is checked against form-action
        form_targets += " " + origin_of(settings.authority_host)
    headers = response.headers
    headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action {form_targets}"
    )
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if request.path.startswith(NO_REFERRER_PREFIXES):
        headers["Referrer-Policy"] = "no-referrer"
    else:
        headers["Referrer-Policy"] = "same-origin"
    if request.is_secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    return response


def flow_seal() -> FlowSeal:
    return current_app.extensions["flow_seal"]


class FlowSeal:
    """Encrypts and authenticates an OAuth flow dict with a key derived from the site's secret."""

    def __init__(self, secret_key: str | bytes, purpose: str):
        secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None,
            info=f"consent_web {purpose}".encode(),
        ).derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, flow: dict[str, Any]) -> str:
        return self._fernet.encrypt(zlib.compress(json.dumps(flow).encode())).decode()

    def open(self, sealed: object, max_age_seconds: int) -> dict[str, Any] | None:
        """The flow, or None if it was tampered with, is older than allowed, or is not ours."""
        if not isinstance(sealed, str):
            return None
        try:
            data = self._fernet.decrypt(sealed.encode(), ttl=max_age_seconds)
            flow = json.loads(zlib.decompress(data))
        except (InvalidToken, zlib.error, ValueError):
            return None
        return flow if isinstance(flow, dict) else None
