"""Key Vault's bearer challenge and token checks.

An unauthenticated request gets 401 with `WWW-Authenticate: Bearer authorization="<authority>/
<tenant>", resource="<resource>"`, which the SDK's challenge policy parses to ask its credential
for a token. The resource is `https://vault.azure.net`; on a `*.vault.localhost` host it is
`https://vault.localhost:<port>` instead, because the SDK's default challenge verification wants
the resource's host (port included) to be a suffix of the vault's. Only tokens devstack signed,
for one of those audiences and the vault's tenant, are accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import jwt

from .. import seed
from ..context import Context
from ..tokens import TokenError
from . import errors

LOCAL_DOMAIN = ".vault.localhost"


def local_resource(ctx: Context) -> str:
    return f"https://vault.localhost:{urlsplit(ctx.urls['vault']).port}"


def audiences(ctx: Context) -> tuple[str, ...]:
    resources = (seed.VAULT_RESOURCE, local_resource(ctx))
    return resources + tuple(f"{r}/" for r in resources)


def challenge(ctx: Context, host: str) -> str:
    hostname = host.rsplit(":", 1)[0].lower()
    resource = local_resource(ctx) if hostname.endswith(LOCAL_DOMAIN) else seed.VAULT_RESOURCE
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
