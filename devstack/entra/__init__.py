"""A local Microsoft Entra ID authority that unmodified MSAL runs every flow against.

Per tenant path `/{tenant}` (a GUID, a verified domain, `organizations` or `common`):
OIDC discovery (`/v2.0/.well-known/openid-configuration` and the v1.0
`/.well-known/openid-configuration`), signing keys (`/discovery/v2.0/keys`),
`/oauth2/v2.0/authorize` with sign-in, MFA, MFA-registration-interrupt and consent pages, and
`/oauth2/v2.0/token` (authorization_code with PKCE S256 or plain, refresh_token with rotation and
the 90-day inactivity window on the emulated clock, client_credentials), answering with Entra's
AADSTS errors (`suberror` `bad_token` on a dead refresh token). Microsoft's own APIs (Partner
Center, Graph, ARM, Key Vault) get v1.0 access tokens; id tokens are v2.0. Whether a tenant's
Conditional Access asks for MFA is switchable per tenant (`POST /mfa` on the admin endpoint).
Refresh tokens, codes, consent grants and revocations live in
`<state-dir>/entra.db` (hashed), so a restart keeps them; sign-in sessions are server-side.

The seeded world is in `devstack.seed`. `<state-dir>/directory.json` adds to it:

    {
      "tenants": [{"domain": "northwind.example",        # required
                   "id": "<guid>",                        # default: derived from the domain
                   "name": "Northwind Traders",
                   "admin_agents_group": "<guid>",        # Partner Center AdminAgents group
                   "groups": {"<guid>": "Group name"}}],
      "users":   [{"upn": "ann@northwind.example",        # required; tenant from the domain
                   "tenant": "northwind.example",         # domain or id
                   "name": "Ann", "password": "devstack", "object_id": "<guid>",
                   "roles": ["Global Administrator" | "Privileged Role Administrator" | "<guid>"],
                   "groups": ["<guid>"], "admin_agent": true, "mfa": true}],
      "apps":    [{"app_id": "<guid>",                    # required
                   "name": "...", "tenant": "contoso.example", "multi_tenant": false,
                   "redirect_uris": ["https://app.example/callback"],
                   "secrets": [{"value": "...", "expires": "2099-12-31T23:59:59Z"}],
                   "permissions": {"https://api.partnercenter.microsoft.com":
                                   ["user_impersonation"]},
                   "app_roles": {"https://graph.microsoft.com": ["Directory.Read.All"]},
                   "group_claims": false}]                # groups in id tokens
    }

An `apps` entry whose `app_id` is a seeded app only adds its `redirect_uris`. Loopback redirect
URIs (`http://localhost/...`, `http://127.0.0.1/...`) match any port, as in Entra.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..context import Context
from ..faults import losing_answers
from . import authorize, discovery, token
from .core import Entra
from .errors import EntraError, malformed

MAX_BODY = 256 * 1024
PAGE_ENDPOINTS = frozenset({"authorize", "login", "select_account", "process_auth", "consent",
                            "logout", "error_lookup"})

log = logging.getLogger(__name__)


def create_app(ctx: Context) -> Flask:
    entra = Entra(ctx)
    ctx.reset_hooks.append(entra.reset)
    ctx.revoke_hook = entra.revoke
    ctx.mfa_policy_hook = entra.set_mfa_policy

    app = Flask("devstack.entra")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False
    app.extensions["entra"] = entra
    discovery.register(app, entra)
    error_page = authorize.register(app, entra)
    token.register(app, entra)
    app.wsgi_app = losing_answers(app.wsgi_app, ctx.faults, "entra")

    @app.before_request
    def network_delay():
        # every endpoint, discovery and keys included: MSAL pays the delay on each of them
        ctx.faults.delay("entra")

    @app.errorhandler(EntraError)
    def entra_error(exc: EntraError):
        if request.endpoint in PAGE_ENDPOINTS:
            return error_page(exc)
        return exc.as_json(entra.now(), entra.authority)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return malformed("The request body is too large.").as_json(entra.now(), entra.authority)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify(error="invalid_request" if exc.code == 405 else "not_found",
                           error_description=exc.description)
        response.status_code = exc.code or 400
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("entra: unexpected error", exc_info=exc)
        error = EntraError(90033, "server_error", "An unexpected error occurred.", status=500)
        return error.as_json(entra.now(), entra.authority)

    @app.after_request
    def security_headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers.setdefault("Strict-Transport-Security",
                                    "max-age=31536000; includeSubDomains")
        if response.mimetype == "text/html":
            form_action = " ".join(dict.fromkeys(["'self'", g.get("form_action", "'self'")]))
            response.headers["Content-Security-Policy"] = (
                "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                f"script-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
                "base-uri 'none'")
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
