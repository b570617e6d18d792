"""`broker resolve`: what a consumer gets for a secret identifier URL, without showing it.

It resolves through `TokenResolver`, exactly as a consumer does (same identity, same errors), so
a success proves the consumer's path works. By default it prints the version's metadata (or, with
`--access-token`, the access token's claims); the token itself only with `--reveal`, alone on
stdout so `$(broker resolve URL --reveal)` captures nothing else. It needs no broker settings
(BROKER_VAULT_URL...), only what a consumer has: DefaultAzureCredential and, for access tokens
of CPV-model credentials, the CPV app settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from broker.cli import EXIT_OK, PARTNER_CENTER_DEFAULT_SCOPE
from broker.cli_render import iso


def resolve(ctx) -> int:
    from broker.resolver import TokenResolver
    from broker.vault import parse_secret_id

    args = ctx.args
    parse_secret_id(args.url)  # InvalidInput (exit 2) before any network call
    resolver = TokenResolver()
    try:
        if args.access_token:
            token = resolver.access_token(args.url, args.scope or PARTNER_CENTER_DEFAULT_SCOPE)
            if args.reveal:
                return _reveal(ctx, token, "access token")
            summary = claims_summary(token, args.scope or PARTNER_CENTER_DEFAULT_SCOPE)
            data = {"secret_id": args.url, "access_token": summary}
            _show(ctx, data, summary, "access token (claims only; --reveal prints the token)")
            return EXIT_OK
        token = resolver.refresh_token(args.url)
        if args.reveal:
            return _reveal(ctx, token, "refresh token")
        metadata = _metadata(args.url)
        _show(ctx, metadata, metadata, "refresh token (hidden; --reveal prints it)")
        return EXIT_OK
    finally:
        resolver.close()


def _reveal(ctx, token: str, what: str) -> int:
    if ctx.err.is_terminal:
        ctx.note(f"Printing the {what}: treat it as a password.")
    print(token, flush=True)
    return EXIT_OK


def _show(ctx, data: dict[str, Any], rows: dict[str, Any], title: str) -> None:
    if ctx.args.json:
        ctx.json(data)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        table.add_row(key.replace("_", " "), "-" if value is None else str(value))
    ctx.out.print(title, markup=False, highlight=False)
    ctx.out.print(table)


def _metadata(url: str) -> dict[str, Any]:
    """The properties of the version a consumer gets at `url` (the value is not kept)."""
    from azure.identity import DefaultAzureCredential

    from broker.vault import parse_secret_id, secret_client, vault_errors

    ident = parse_secret_id(url)
    credential_id = ident.name[3:]
    with vault_errors(credential_id), DefaultAzureCredential() as credential, \
            secret_client(ident.vault_url, credential) as client:
        props = client.get_secret(ident.name, ident.version).properties
    tags = dict(props.tags or {})
    return {
        "secret_id": props.id,
        "credential_id": tags.get("credential") or credential_id,
        "version": props.version,
        "enabled": bool(props.enabled),
        "status": tags.get("status"),
        "source": tags.get("source"),
        "obtained_at": tags.get("obtained_at"),
        "not_before": iso(props.not_before),
        "expires_on": iso(props.expires_on),
        "tenant_id": tags.get("tenant_id"),
        "client_id": tags.get("client_id"),
        "consented_by": tags.get("consented_by") or None,
        "mfa": tags.get("mfa") == "true",
    }


def claims_summary(token: str, scope: str) -> dict[str, Any]:
    """What an access token says about itself; enough to check audience, tenant, user, MFA."""
    from broker.identity import unverified_claims

    claims = unverified_claims(token)
    expires = claims.get("exp")
    issued = claims.get("iat")
    now = datetime.now(UTC).timestamp()
    amr = claims.get("amr") or []
    return {
        "scope": scope,
        "audience": claims.get("aud"),
        "scopes": str(claims.get("scp") or "").split() or claims.get("roles") or [],
        "tenant_id": claims.get("tid"),
        "user": claims.get("upn") or claims.get("unique_name") or claims.get("oid"),
        "amr": list(amr),
        "mfa": "mfa" in amr,
        "issued_at": _instant(issued),
        "expires_at": _instant(expires),
        "expires_in_s": int(expires - now) if isinstance(expires, int | float) else None,
    }


def _instant(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return iso(datetime.fromtimestamp(value, UTC))
