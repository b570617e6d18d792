"""Key Vault's bearer challenge and token checks.

An unauthenticated request gets 401 with `WWW-Authenticate: Bearer authorization="<authority>/
<tenant>", resource="<resource>"`, which the SDK's challenge policy parses to ask its credential
for a token. The resource is `https://vault.azure.net`; on a `*.vault.localhost` host it is
`https://vault.localhost:<port>` instead, because the SDK's default challenge verification wants
the resource's host (port included) to be a suffix of the vault's. Only tokens devstack signed,
for one of those audiences and the vault's tenant, are accepted.

Then Azure RBAC decides (`authorize`): each route is one data action on the vault (listing) or on
one secret, and the caller's `oid` must hold a role granting it at a scope containing that
resource (`devstack.rbac`). A refusal is Key Vault's 403 `Forbidden` with inner `ForbiddenByRbac`,
worded as Key Vault words it: caller, action, resource (lower-cased), vault.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import jwt

from .. import rbac, seed
from ..context import Context
from ..tokens import TokenError
from . import errors

LOCAL_DOMAIN = ".vault.localhost"
VAULT_SERVICES = ("vault", "config_vault")


def local_resource(ctx: Context, service: str = "vault") -> str:
    return f"https://vault.localhost:{urlsplit(ctx.urls[service]).port}"


def audiences(ctx: Context) -> tuple[str, ...]:
    resources = (seed.VAULT_RESOURCE,
                 *(local_resource(ctx, s) for s in VAULT_SERVICES if s in ctx.urls))
    return resources + tuple(f"{r}/" for r in resources)


def challenge(ctx: Context, host: str) -> str:
    hostname, _, port = host.lower().partition(":")
    resource = seed.VAULT_RESOURCE
    if hostname.endswith(LOCAL_DOMAIN):  # the port of the vault that was called
        resource = f"https://vault.localhost:{port}" if port else local_resource(ctx)
    authority = f"{ctx.urls['authority']}/{seed.CPV_TENANT_ID}"
    return f'Bearer authorization="{authority}", resource="{resource}"'


def authenticate(ctx: Context, header: str | None, host: str) -> dict:
    """The claims of the request's bearer token; raises a 401 VaultError with the challenge."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.unauthorized("AKV10000: Request is missing a Bearer or PoP token.",
                                  challenge(ctx, host))
    try:
        claims = ctx.signer.verify(token, audiences=audiences(ctx))
    except TokenError as exc:
        raise errors.unauthorized(_reason(ctx, token, exc), challenge(ctx, host)) from exc
    if claims.get("tid") != seed.CPV_TENANT_ID:
        raise errors.unauthorized(
            f"AKV10032: Invalid issuer. Expected one of {ctx.signer.issuer(seed.CPV_TENANT_ID)}, "
            f"found {claims.get('iss')}.",
            challenge(ctx, host),
        )
    return claims


def _reason(ctx: Context, token: str, exc: TokenError) -> str:
    """Key Vault's AKV100xx wording for why a token was refused."""
    cause = exc.__cause__
    if isinstance(cause, jwt.InvalidAudienceError):
        found = jwt.decode(token, options={"verify_signature": False}).get("aud")
        return f"AKV10022: Invalid audience. Expected {seed.VAULT_RESOURCE}, found: {found}."
    if isinstance(cause, jwt.ExpiredSignatureError):
        return "AKV10021: Token is expired."
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        kid = None
    if kid != ctx.signer.kid:
        return "AKV10046: Unable to resolve the key used for signature validation."
    return "AKV10010: Token signature validation failed."


# each route's data action, and whether it acts on one secret (else on the vault)
ROUTE_ACTIONS = {
    "set_secret": (rbac.SET_SECRET, True),
    "get_secret": (rbac.GET_SECRET, True),
    "update_secret": (rbac.UPDATE_SECRET, True),
    "list_secrets": (rbac.READ_METADATA, False),
    "list_versions": (rbac.READ_METADATA, True),
    "delete_secret": (rbac.DELETE_SECRET, True),
    "backup_secret": (rbac.BACKUP_SECRET, True),
    "restore_secret": (rbac.RESTORE_SECRET, False),
    "list_deleted": (rbac.READ_METADATA, False),
    "get_deleted": (rbac.READ_METADATA, True),
    "purge_deleted": (rbac.PURGE_SECRET, True),
    "recover_deleted": (rbac.RECOVER_SECRET, True),
}


def request_action(endpoint: str, view_args: dict | None, vault_name: str) -> tuple[str, str]:
    """(data action, resource id) of a route; a route not listed needs a secrets-wide role."""
    action, per_secret = ROUTE_ACTIONS.get(
        endpoint, (f"Microsoft.KeyVault/vaults/secrets/{endpoint}/action", False))
    name = (view_args or {}).get("name")
    if per_secret and name:
        return action, rbac.secret_scope(vault_name, name)
    return action, seed.vault_scope(vault_name)


def authorize(ctx: Context, claims: dict, vault_name: str, endpoint: str | None,
              view_args: dict | None) -> None:
    """Raise Key Vault's 403 `ForbiddenByRbac` unless a role of the caller grants the action."""
    if endpoint is None:  # no such route: the 404 says so, as Key Vault's does
        return
    action, resource = request_action(endpoint, view_args, vault_name)
    if not ctx.rbac.allows(claims.get("oid"), action, resource):
        raise forbidden_by_rbac(claims, action, resource, vault_name)


def forbidden_by_rbac(claims: dict, action: str, resource: str, vault_name: str) \
        -> errors.VaultError:
    caller = (f"appid={claims.get('appid') or claims.get('azp')};oid={claims.get('oid')};"
              f"iss={claims.get('iss')}")
    return errors.VaultError(
        403, "Forbidden",
        "Caller is not authorized to perform action on resource.\r\n"
        "If role assignments, deny assignments or role definitions were changed recently, "
        "please observe propagation time.\r\n"
        f"Caller: {caller}\r\n"
        f"Action: '{action}'\r\n"
        f"Resource: '{resource.lower()}'\r\n"
        "Assignment: (not found)\r\n"
        "DenyAssignmentId: null\r\n"
        "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
        f"Vault: {vault_name};location={seed.LOCATION}\r\n",
        inner="ForbiddenByRbac",
    )
