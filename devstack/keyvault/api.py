"""The vault's Flask app: the request pipeline every Key Vault call goes through, then routes.

Order per request: network delay, injected fault, bearer challenge, api-version, RBAC, service
limit; only then does a route read the body and touch the store. So a fault, a throttle, a
refusal or a malformed request is answered before any state changes. `GET /_devstack/stats` sits
outside the pipeline.

One app is one vault: devstack serves the token vault and the config vault as two apps, each
with its own name (its RBAC scope), store file and limits. `seed` puts a vault's own secrets in
place at start and again after `POST /reset`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import seed as world
from ..context import Context
from ..faults import losing_answers
from . import auth, errors, routes, validation
from .limits import Limits
from .settings import Deletions, VaultSettings
from .store import DB_FILE, DeletedMissing, NameDeleted, NameTaken, SecretMissing, Store

# host names the devstack certificate covers; anything else gets the vault's own URL in ids
VAULT_HOST = re.compile(
    r"^(localhost|127\.0\.0\.1|\[::1\]|[a-z0-9-]{1,63}\.vault\.localhost)(:\d{1,5})?$", re.I
)
STATS_PATH = "/_devstack/stats"
MAX_BODY_BYTES = 1024 * 1024
# what every Key Vault answer carries (azure-sdk-for-js keyvault-secrets recordings, e.g.
# recordings/node/secret_client__list_secrets_in_various_ways/recording_can_list_deleted_secrets.js)
STANDARD_HEADERS = {
    "Cache-Control": "no-cache",
    "Pragma": "no-cache",
    "Expires": "-1",
    "x-ms-keyvault-region": "devstack",
    "x-ms-keyvault-service-version": "1.9.2883.1",
    "x-ms-keyvault-network-info": "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
    "Strict-Transport-Security": "max-age=31536000;includeSubDomains",
    "X-Content-Type-Options": "nosniff",
}


def create_app(ctx: Context, name: str = "main",
               seed: Callable[[Store], None] | None = None) -> Flask:
    """One vault; `name` keys its settings (`ctx.vaults`), its database file and its RBAC scope
    (`world.vault_name`); `seed` puts the vault's own secrets in place (again after a reset)."""
    app = Flask("devstack.keyvault")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    store = Store(ctx.state_dir, ctx.clock.now,
                  DB_FILE if name == "main" else f"vault-{name}.db")
    vault_name = world.vault_name(name)
    limits = Limits(ctx.vault_throttle)
    settings = VaultSettings(purge_protection=ctx.purge_protection, realistic=ctx.realistic)
    ctx.vaults[name] = settings
    deletions = Deletions()
    if seed is not None:
        seed(store)

    def wipe() -> None:
        store.wipe()
        limits.reset()
        deletions.clear()
        settings.purge_protection, settings.realistic = ctx.purge_protection, ctx.realistic
        if seed is not None:
            seed(store)

    ctx.reset_hooks.append(wipe)

    @app.before_request
    def pipeline():
        if request.path == STATS_PATH:
            return None
        limits.count("requests")
        ctx.faults.delay("vault")
        status = ctx.faults.should_fail("vault")
        if status == 429:
            limits.count("throttled")
            raise errors.throttled(retry_after=1)
        if status is not None:
            raise errors.unavailable()
        g.base = _base_url(ctx)
        claims = auth.authenticate(ctx, request.headers.get("Authorization"), request.host)
        validation.api_version(request.args)
        auth.authorize(ctx, claims, vault_name, request.endpoint, request.view_args)
        kind = "create" if request.endpoint == "set_secret" else "other"
        retry_after = limits.admit(kind)
        if retry_after is not None:
            limits.count("throttled")
            raise errors.throttled(retry_after)
        return None

    @app.after_request
    def standard_headers(response):
        response.headers.update(STANDARD_HEADERS)
        if response.mimetype == "application/json":
            response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        client_id = request.headers.get("x-ms-client-request-id")
        if client_id:
            response.headers["x-ms-client-request-id"] = client_id
        return response

    @app.get(STATS_PATH)
    def stats():
        return jsonify(limits.stats())

    _register_errors(app)
    routes.register(app, store, name, settings, deletions)
    app.wsgi_app = losing_answers(app.wsgi_app, ctx.faults, "vault")
    return app


def _base_url(ctx: Context) -> str:
    """`https://<host>` as the client called it, when it is a name this vault answers to."""
    host = request.host if VAULT_HOST.match(request.host) else urlsplit(ctx.urls["vault"]).netloc
    return f"https://{host}"


def _register_errors(app: Flask) -> None:
    app.register_error_handler(errors.VaultError, lambda e: e.response())
    app.register_error_handler(
        SecretMissing, lambda e: errors.secret_not_found(e.name, e.version).response()
    )
    app.register_error_handler(
        DeletedMissing, lambda e: errors.deleted_secret_not_found(e.name).response()
    )
    app.register_error_handler(
        NameDeleted, lambda e: errors.deleted_but_recoverable(e.name).response()
    )
    app.register_error_handler(NameTaken, lambda e: errors.already_exists(e.name).response())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # unknown paths, wrong methods, oversized bodies: Key Vault's shape, werkzeug's words
        code = {404: "NotFound", 405: "MethodNotAllowed", 413: "BadParameter"}.get(
            exc.code or 500, "BadRequest"
        )
        return errors.VaultError(exc.code or 500, code, exc.description or "").response()
