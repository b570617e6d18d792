"""The authority's state and the rules both endpoints share: tenants, client authentication,
consent, the conditions a user must meet for a resource, and token issuance."""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

from flask import request

from ..context import Context
from . import world
from .directory import ALL_PRINCIPALS, GUID, App, Directory, Grant, Tenant, User
from .errors import EntraError, app_not_found, malformed, missing, tenant_not_found
from .scopes import ResourceScopes
from .sessions import Sessions
from .store import RefreshToken, Store

CODE_LIFETIME = 600  # emulated seconds, as Entra's ~10 minutes
REFRESH_INACTIVITY = 90 * 86400  # emulated seconds
META_TENANTS = ("organizations", "common")
TENANT_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}$")


@dataclass(frozen=True)
class TenantPath:
    """The `{tenant}` segment of a URL: a tenant, or `organizations`/`common`."""

    name: str
    tenant: Tenant | None  # None for organizations/common

    @property
    def display(self) -> str:
        return self.tenant.name if self.tenant else self.name


class Entra:
    """One authority: its directory, what it remembers (SQLite) and its browser sessions."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.directory: Directory = world.load(ctx.state_dir, ctx.cpv_client_secret)
        self.store = Store(ctx.state_dir)
        self.sessions = Sessions()
        self.store.add_grants(self.directory.seeded_grants, self.now())
        # tenant id -> whether Conditional Access requires MFA for the protected resources
        self.mfa_policy: dict[str, bool] = {}

    def now(self) -> float:
        return self.ctx.clock.now()

    @property
    def authority(self) -> str:
        return self.ctx.urls.get("authority", "")

    # control hooks

    def reset(self) -> None:
        self.sessions.clear()
        self.mfa_policy.clear()
        self.store.reset(self.directory.seeded_grants, self.now())

    def set_mfa_policy(self, tenant: str, required: bool) -> str:
        """`POST /mfa`: switch a tenant's Conditional Access MFA policy; returns its id."""
        found = self.directory.tenant(tenant)
        if found is None:
            raise ValueError(f"unknown tenant {tenant[:100]!r}")
        self.mfa_policy[found.id] = required
        return found.id

    def mfa_required(self, tenant_id: str, resource) -> bool:
        """Whether the tenant's Conditional Access asks for MFA before a token for `resource`
        (on by default, as in every partner tenant since the Partner Center MFA mandate)."""
        return resource.requires_mfa and self.mfa_policy.get(tenant_id, True)

    def revoke(self, upn: str) -> int:
        """`POST /revoke`: revoke a user's refresh tokens and sign-in sessions."""
        user = self.directory.user(upn)
        if user is None:
            return 0
        self.sessions.drop_user(user)
        return self.store.revoke_user(user.tenant_id, user.object_id, self.now())

    # tenants and clients

    def tenant_path(self, name: str, error: str = "invalid_request") -> TenantPath:
        if name.lower() in META_TENANTS:
            return TenantPath(name.lower(), None)
        if len(name) > 253 or not TENANT_NAME.match(name):
            raise EntraError(900023, error,
                             f"Specified tenant identifier '{name[:100]}' is neither a valid "
                             "DNS name, nor a valid external domain.")
        tenant = self.directory.tenant(name)
        if tenant is None:
            raise tenant_not_found(name, error)
        return TenantPath(name, tenant)

    def client(self, client_id: str, path: TenantPath, error: str = "unauthorized_client") -> App:
        """The app behind `client_id`, if it can be used through this tenant path."""
        app = self.directory.app(client_id) if GUID.match(client_id) else None
        if app is None or (path.tenant and not app.multi_tenant
                           and app.tenant_id != path.tenant.id):
            raise app_not_found(client_id, path.display, error)
        if path.tenant is None and not app.multi_tenant:
            raise EntraError(
                50194, "invalid_request",
                f"Application '{app.app_id}'({app.name}) is not configured as a multi-tenant "
                "application. Usage of the /common endpoint is not supported for such "
                "applications created after '10/15/2018'. Use a tenant-specific endpoint or "
                "configure the application to be multi-tenant.")
        return app

    def authenticate_client(self, form, path: TenantPath) -> App:
        """Check the client id and secret (body or HTTP Basic), as on every confidential call."""
        body_id, body_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic_id, basic_secret = _basic_credentials()
        client_id = body_id or basic_id
        if not client_id:
            raise missing("client_id")
        if basic_id and body_id and basic_id != body_id:
            raise malformed("The client_id in the body and in the Authorization header differ.")
        app = self.client(client_id, path)
        if form.get("client_assertion"):
            raise EntraError(700027, "invalid_client",
                             "Client assertion failed signature validation.", status=401)
        secret = body_secret or basic_secret
        if not secret:
            raise EntraError(7000218, "invalid_client",
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.", status=401)
        matched = [s for s in app.secrets
                   if hmac.compare_digest(s.value.encode(), secret.encode("utf-8", "replace"))]
        if not matched:
            raise EntraError(
                7000215, "invalid_client",
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.app_id}'.", status=401)
        if all(s.expires is not None and s.expires <= self.now() for s in matched):
            raise EntraError(
                7000222, "invalid_client",
                f"The provided client secret keys for app '{app.app_id}' are expired. Visit the "
                "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
                "or consider using certificate credentials for added security: "
                "https://aka.ms/certCreds.", status=401)
        return app

    # consent

    def granted(self, tenant_id: str, app: App, user: User) -> set[tuple[str, str]]:
        return self.store.granted(tenant_id, app.app_id, user.object_id)

    def grant(self, tenant_id: str, app: App, user: User, wanted: set[tuple[str, str]],
              tenant_wide: bool) -> None:
        principal = ALL_PRINCIPALS if tenant_wide else user.object_id
        self.store.add_grants(
            [Grant(tenant_id, app.app_id, principal, r, p) for r, p in sorted(wanted)], self.now())

    def consented_scopes(self, tenant_id: str, app: App, user: User,
                         wanted: ResourceScopes) -> ResourceScopes:
        """The permissions of `wanted` the user may use; AADSTS65001 if any is missing."""
        granted = {p for r, p in self.granted(tenant_id, app, user) if r == wanted.resource.uri}
        if wanted.default:
            usable = granted & (wanted.permissions | set(wanted.resource.delegated))
        else:
            usable = set(wanted.permissions) if wanted.permissions <= granted else set()
        if not usable and (wanted.permissions or wanted.default):
            raise EntraError(
                65001, "invalid_grant",
                "The user or administrator has not consented to use the application with ID "
                f"'{app.app_id}' named '{app.name}'. Send an interactive authorization request "
                "for this user and resource.", suberror="consent_required")
        return ResourceScopes(wanted.resource, frozenset(usable), wanted.default,
                              wanted.by_app_id)

    # the conditions a user must meet for a resource

    def check_resource_access(self, user: User, wanted: ResourceScopes, mfa: bool) -> None:
        resource = wanted.resource
        if resource.requires_admin_agent and not self.directory.is_admin_agent(user):
            raise EntraError(50105, "invalid_grant", not_admin_agent(user, resource))
        if not self.mfa_required(user.tenant_id, resource):
            return
        if not user.mfa_registered:
            raise EntraError(
                50079, "interaction_required",
                "Due to a configuration change made by your administrator, or because you moved "
                "to a new location, you must enroll in multi-factor authentication to access "
                f"'{resource.app_id}'.")
        if not mfa:
            raise EntraError(
                50076, "interaction_required",
                "Due to a configuration change made by your administrator, or because you moved "
                "to a new location, you must use multi-factor authentication to access "
                f"'{resource.app_id}'.")

    def check_refresh_token(self, token: RefreshToken, app: App, path: TenantPath) -> User:
        """Why a stored refresh token cannot be redeemed now, if it cannot."""
        if token.client_id != app.app_id:
            raise EntraError(700007, "invalid_grant",
                             "Refresh token was issued to a different client. The refresh "
                             f"token was issued to '{token.client_id}', and the request was "
                             f"made by '{app.app_id}'.")
        if path.tenant and path.tenant.id != token.tenant_id:
            raise EntraError(700005, "invalid_grant",
                             "Provided refresh token is intended to use against other tenant, "
                             "thus rejected.")
        now = self.now()
        if now - token.last_used_at > REFRESH_INACTIVITY:
            raise EntraError(
                700082, "invalid_grant",
                "The refresh token has expired due to inactivity. The token was issued on "
                f"{iso(token.issued_at)} and was inactive for 90.00:00:00.",
                suberror="bad_token")
        user = self.directory.user_by_oid(token.tenant_id, token.user_oid)
        if user is None:
            raise EntraError(50034, "invalid_grant",
                             f"The user account {token.upn} does not exist in the directory.")
        valid_from = self.store.tokens_valid_from(token.tenant_id, token.user_oid)
        if token.revoked or (valid_from is not None and valid_from > token.auth_time):
            raise revoked(token.auth_time, valid_from or token.auth_time)
        return user

    # issuance

    def new_refresh_token(self, *, user: User, app: App, wanted: ResourceScopes,
                          oidc: frozenset[str], mfa: bool, auth_time: float) -> str:
        token = _opaque("0.A", 48, 640)
        self.store.add_refresh_token(
            token, tenant_id=user.tenant_id, client_id=app.app_id, user_oid=user.object_id,
            upn=user.upn, resource=wanted.resource.uri,
            scopes=[*wanted.scope_strings(), *sorted(oidc)], mfa=mfa, auth_time=auth_time,
            now=self.now())
        return token

    def new_code(self, payload: dict) -> str:
        code = _opaque("1.A", 40, 420)
        self.store.add_code(code, payload, self.now())
        return code

    def user_tokens(self, *, user: User, app: App, wanted: ResourceScopes, oidc: frozenset[str],
                    mfa: bool, auth_time_real: float, nonce: str | None, client_info: bool,
                    refresh_token: str | None) -> dict:
        """The token endpoint's JSON for a user: access, id and refresh tokens, client_info."""
        signer = self.ctx.signer
        permissions = sorted(wanted.permissions)
        access_token, expires_on = signer.access_token(
            tenant_id=user.tenant_id,
            audience=wanted.audience,
            version=wanted.resource.token_version,
            subject=user.object_id,
            app_id=app.app_id,
            upn=user.upn,
            unique_name=user.upn,
            name=user.name,
            amr=["pwd", "mfa"] if mfa else ["pwd"],
            scp=" ".join(permissions) or " ".join(sorted(oidc - {"offline_access"})),
            wids=user.wids,
            groups=list(user.groups),
            idtyp="user",
            acr="1",
            appidacr="1",
            ipaddr=request.remote_addr,
        )
        expires_in = max(expires_on - int(time.time()), 0)
        body = {
            "token_type": "Bearer",
            "scope": " ".join([*wanted.scope_strings(), *sorted(oidc & {"openid", "profile",
                                                                         "email"})]),
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        if "openid" in oidc:
            body["id_token"] = self.id_token(user, app, mfa, auth_time_real, nonce)
        if client_info:
            body["client_info"] = client_info_for(user)
        return body

    def id_token(self, user: User, app: App, mfa: bool, auth_time_real: float,
                 nonce: str | None) -> str:
        """A v2.0 id token: no `amr` and no `auth_time` (those are v1.0 or optional claims),
        and `groups` only for an app whose manifest asks for group claims."""
        del mfa, auth_time_real
        now = int(time.time())
        claims = {
            "aud": app.app_id,
            "iss": self.ctx.signer.issuer(user.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "sub": pairwise_subject(user, app),
            "oid": user.object_id,
            "tid": user.tenant_id,
            "preferred_username": user.upn,
            "name": user.name,
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16)[:22],
        }
        if app.group_claims:
            claims["groups"] = list(user.groups)
        if nonce:
            claims["nonce"] = nonce
        return self.ctx.signer.sign(claims)


def not_admin_agent(user: User, resource) -> str:
    return (f"The signed in user '{user.upn}' is not assigned to a role for the application "
            f"'{resource.app_id}'({resource.name}). {resource.name} requires the user to be a "
            "member of the partner tenant's AdminAgents group (the Admin Agent role).")


def revoked(auth_time: float, valid_from: float) -> EntraError:
    # with `suberror: bad_token`, as in MSAL Node's recorded AADSTS50173 answer
    return EntraError(
        50173, "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        f"The user might have changed or reset their password. The grant was issued on "
        f"'{iso(auth_time)}' and the TokensValidFrom date (before which tokens are not valid) "
        f"for this user is '{iso(valid_from)}'.", suberror="bad_token")


def iso(epoch: float) -> str:
    """Entra's timestamp style: 2024-03-24T14:58:04.6654271Z."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{whole}.{int((epoch % 1) * 10_000_000):07d}Z"


def client_info_for(user: User) -> str:
    raw = json.dumps({"uid": user.object_id, "utid": user.tenant_id},
                     separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pairwise_subject(user: User, app: App) -> str:
    raw = f"{user.object_id}:{app.app_id}".encode()
    return base64.urlsafe_b64encode(hmac.digest(b"devstack-sub", raw, "sha256")).rstrip(
        b"=").decode()


def _opaque(prefix: str, head: int, tail: int) -> str:
    """Random, shaped like Entra's opaque grants (`0.A...` refresh tokens, `1.A...` codes)."""
    return f"{prefix}{secrets.token_urlsafe(head)}.AgABAAEAAAD{secrets.token_urlsafe(tail)}"


def _basic_credentials() -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return "", ""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)
