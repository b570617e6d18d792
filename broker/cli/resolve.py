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

from broker.cli.exits import EXIT_OK, PARTNER_CENTER_DEFAULT_SCOPE
from broker.cli.render import iso


def resolve(ctx) -> int:
    from broker.resolver import TokenResolver

    args = ctx.args
    resolver = TokenResolver()  # it parses the URL (InvalidInput, exit 2) before any request
    try:
        if args.access_token:
            scope = args.scope or PARTNER_CENTER_DEFAULT_SCOPE
            if args.reveal:
                return _reveal(ctx, resolver.access_token(args.url, scope), "access token")
            summary = claims_summary(resolver.access_token_claims(args.url, scope), scope)
            data = {"secret_id": args.url, "access_token": summary}
            _show(ctx, data, summary, "access token (claims only; --reveal prints the token)")
            return EXIT_OK
        token = resolver.refresh_token(args.url)
        if args.reveal:
            return _reveal(ctx, token, "refresh token")
        metadata = resolver.describe(args.url)
        metadata.update(not_before=iso(metadata["not_before"]),
                        expires_on=iso(metadata["expires_on"]))
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


def claims_summary(claims: dict[str, Any], scope: str) -> dict[str, Any]:
    """What an access token says about itself; enough to check audience, tenant, user, MFA."""
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
