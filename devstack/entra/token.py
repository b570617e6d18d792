"""`/{tenant}/oauth2/v2.0/token`: authorization_code, refresh_token and client_credentials.

Every confidential request is authenticated; every failure is Entra's JSON error with its
AADSTS code (400 for grant and request errors, 401 for client errors, 429/503 for faults).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from flask import Flask, jsonify, request

from .. import seed
from .core import CODE_LIFETIME, Entra, TenantPath, revoked
from .directory import Directory
from .errors import EntraError, app_not_found, malformed, missing
from .scopes import ResourceScopes, ScopeSet, parse

MAX_FIELD = 8192
GRANTS = ("authorization_code", "refresh_token", "client_credentials")
RETRY_AFTER = 5


def register(app: Flask, entra: Entra) -> None:
    @app.route("/<tenant>/oauth2/v2.0/token", methods=["GET", "POST"])
    def token(tenant: str):
        if request.method != "POST":
            raise EntraError(900561, "invalid_request",
                             "The endpoint only accepts POST, OPTIONS requests. Received a "
                             f"{request.method} request.")
        fault = entra.ctx.faults.should_fail("entra")
        if fault == 429:
            raise EntraError(90055, "temporarily_unavailable",
                             "There are too many incoming requests. Try again later.",
                             status=429, retry_after=RETRY_AFTER)
        if fault == 503:
            raise EntraError(90024, "temporarily_unavailable",
                             "A transient error has occurred. Try again.", status=503,
                             retry_after=RETRY_AFTER)
        form = request.form
        for name, value in form.items():
            if len(value) > MAX_FIELD or len(name) > 256:
                raise malformed(f"The '{name[:40]}' parameter is too long.")
        path = entra.tenant_path(tenant)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise missing("grant_type")
        if grant_type not in GRANTS:
            raise EntraError(70003, "unsupported_grant_type",
                             f"The app requested an unsupported grant type '{grant_type[:80]}'.")
        client = entra.authenticate_client(form, path)
        if grant_type == "client_credentials":
            return jsonify(_client_credentials(entra, path, client, form))
        if grant_type == "authorization_code":
            return _no_store(_authorization_code(entra, path, client, form))
        return _no_store(_refresh_token(entra, path, client, form))


def _no_store(body: dict):
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    return response


def _requested(directory: Directory, path: TenantPath, text: str | None) -> ScopeSet:
    scopes = parse(directory, text or "", path.display)
    if len(scopes.resources) > 1:
        names = ", ".join(r.resource.uri for r in scopes.resources)
        raise EntraError(28000, "invalid_scope",
                         "Provided value for the input parameter scope is not valid because it "
                         f"contains more than one resource. Scope {names} is not valid.")
    return scopes


def _authorization_code(entra: Entra, path: TenantPath, client, form) -> dict:
    code = form.get("code")
    if not code:
        raise missing("code")
    redirect_uri = form.get("redirect_uri")
    if not redirect_uri:
        raise missing("redirect_uri")
    found = entra.store.code(code)
    if found is None:
        raise EntraError(9002313, "invalid_grant",
                         "Invalid request. Request is malformed or invalid.")
    payload, issued_at, redeemed_at = found
    if payload["client_id"] != client.app_id:
        raise EntraError(70000, "invalid_grant",
                         "The provided value for the 'code' parameter is not valid. The code "
                         "was issued to a different client.")
    if path.tenant and path.tenant.id != payload["tenant_id"]:
        raise EntraError(700005, "invalid_grant",
                         "Provided Authorization Code is intended to use against other tenant, "
                         "thus rejected.")
    if redeemed_at is not None:
        raise _already_redeemed()
    if entra.now() - issued_at > CODE_LIFETIME:
        raise EntraError(70008, "invalid_grant",
                         "The provided authorization code or refresh token has expired due to "
                         "inactivity. Send a new interactive authorization request for this "
                         "user and resource.")
    if redirect_uri != payload["redirect_uri"]:
        raise EntraError(70000, "invalid_grant",
                         "The provided value for the 'redirect_uri' is not valid. The value "
                         "must exactly match the redirect URI used to obtain the authorization "
                         "code.")
    if payload["code_challenge"]:
        verifier = form.get("code_verifier", "")
        if payload.get("code_challenge_method", "S256") == "plain":
            digest = verifier  # RFC 7636 4.2: plain compares the verifier itself
        else:
            digest = base64.urlsafe_b64encode(hashlib.sha256(
                verifier.encode("ascii", "replace")).digest()).rstrip(b"=").decode()
        if not (43 <= len(verifier) <= 128) or not hmac.compare_digest(
                digest.encode("utf-8", "replace"), payload["code_challenge"].encode()):
            raise EntraError(501481, "invalid_grant",
                             "The Code_Verifier does not match the code_challenge supplied in "
                             "the authorization request.")
    if not entra.store.redeem_code(code, entra.now()):
        raise _already_redeemed()
    user = entra.directory.user_by_oid(payload["tenant_id"], payload["user_oid"])
    if user is None:
        raise EntraError(50034, "invalid_grant", "The user account does not exist in the "
                         "directory.")
    valid_from = entra.store.tokens_valid_from(user.tenant_id, user.object_id)
    if valid_from is not None and valid_from > payload["auth_time"]:
        raise revoked(payload["auth_time"], valid_from)
    consented = {tuple(s.split(" ", 1)) for s in payload["scopes"]}
    requested = _requested(entra.directory, path, form.get("scope"))
    wanted = requested.single or _first_consented(entra, consented, payload)
    oidc = frozenset(payload["oidc"]) | requested.oidc
    if wanted is None:  # sign-in only: a Microsoft Graph token with the OpenID scopes
        wanted = ResourceScopes(entra.directory.resource(seed.GRAPH_RESOURCE), frozenset())
    else:
        wanted = entra.consented_scopes(user.tenant_id, client, user, wanted.expand(client))
        entra.check_resource_access(user, wanted, payload["mfa"])
    refresh = None
    if "offline_access" in oidc:
        refresh = entra.new_refresh_token(user=user, app=client, wanted=wanted, oidc=oidc,
                                          mfa=payload["mfa"], auth_time=payload["auth_time"])
    return entra.user_tokens(user=user, app=client, wanted=wanted, oidc=oidc,
                             mfa=payload["mfa"], auth_time_real=payload["auth_time_real"],
                             nonce=payload["nonce"], client_info=form.get("client_info") == "1",
                             refresh_token=refresh)


def _first_consented(entra: Entra, consented: set, payload: dict) -> ResourceScopes | None:
    """Without a `scope` on redemption, the token is for the first resource of the request."""
    if not consented and not payload.get("default_resources"):
        return None
    known = {r for r, _ in consented} | set(payload.get("default_resources", []))
    # codes issued before the order was recorded fall back to the alphabetical first
    order = [r for r in payload.get("resource_order", []) if r in known] or sorted(known)
    uri = order[0]
    resource = entra.directory.resource(uri)
    names = frozenset(p for r, p in consented if r == uri)
    return ResourceScopes(resource, names, uri in payload.get("default_resources", []),
                          uri in payload.get("by_app_id", []))


def _already_redeemed() -> EntraError:
    return EntraError(54005, "invalid_grant",
                      "OAuth2 Authorization code was already redeemed, please retry with a new "
                      "valid code or use an existing refresh token.")


def _refresh_token(entra: Entra, path: TenantPath, client, form) -> dict:
    raw = form.get("refresh_token")
    if not raw:
        raise missing("refresh_token")
    stored = entra.store.refresh_token(raw)
    if stored is None:
        # MSAL Node treats invalid_grant as interaction required only with this suberror
        raise EntraError(9002313, "invalid_grant",
                         "Invalid request. Request is malformed or invalid.",
                         suberror="bad_token")
    user = entra.check_refresh_token(stored, client, path)
    requested = _requested(entra.directory, path, form.get("scope"))
    wanted = requested.single
    if wanted is None:  # no resource asked for: the one the token was last used for
        resource = entra.directory.resource(stored.resource)
        wanted = ResourceScopes(resource, frozenset(), default=True)
    wanted = entra.consented_scopes(stored.tenant_id, client, user, wanted.expand(client))
    entra.check_resource_access(user, wanted, stored.mfa)
    entra.store.use_refresh_token(stored.token_hash, entra.now())
    oidc = requested.oidc or frozenset(s for s in stored.scopes if "/" not in s and
                                       s in ("openid", "profile", "email", "offline_access"))
    refresh = entra.new_refresh_token(user=user, app=client, wanted=wanted,
                                      oidc=oidc | {"offline_access"}, mfa=stored.mfa,
                                      auth_time=stored.auth_time)
    return entra.user_tokens(user=user, app=client, wanted=wanted, oidc=oidc, mfa=stored.mfa,
                             auth_time_real=stored.auth_time - entra.ctx.clock.offset_seconds,
                             nonce=None,
                             client_info=form.get("client_info") == "1", refresh_token=refresh)


def _client_credentials(entra: Entra, path: TenantPath, client, form) -> dict:
    if path.tenant is None:
        raise EntraError(9001023, "invalid_request",
                         "The grant type isn't supported over the /common or /organizations "
                         "endpoints. Please use a tenant-specific endpoint.")
    scope = (form.get("scope") or "").strip()
    if not scope:
        raise missing("scope")
    items = scope.split()
    if len(items) != 1 or not items[0].endswith("/.default"):
        raise EntraError(1002012, "invalid_scope",
                         f"The provided value for scope {scope[:200]} is not valid. Client "
                         "credential flows must have a scope value with /.default suffixed to "
                         "the resource identifier (application ID URI).")
    requested = _requested(entra.directory, path, scope)
    resource = requested.single.resource
    tenant = path.tenant
    if tenant.id != client.tenant_id and not entra.store.has_service_principal(
            tenant.id, client.app_id):
        raise app_not_found(client.app_id, tenant.name)
    roles = list(client.app_roles.get(resource.uri, ()))
    sp = entra.directory.service_principal_id(client.app_id, tenant.id)
    access_token, expires_on = entra.ctx.signer.access_token(
        tenant_id=tenant.id, audience=requested.single.audience, subject=sp,
        app_id=client.app_id, version=resource.token_version, idtyp="app",
        roles=roles or None, appidacr="1")
    expires_in = max(expires_on - int(time.time()), 0)
    return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
            "access_token": access_token}
