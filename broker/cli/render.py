"""How the CLI shows things: rich tables for people, stable JSON for scripts.

The JSON shapes here are a contract (documented in the README): fields are only ever added.
Nothing in this module ever receives a token or a secret value, only vault properties.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.credentials import Credential, Status, TokenVersion

STATUS_STYLES = {
    Status.ACTIVE: "green", Status.EXPIRING: "yellow", Status.NEEDS_CONSENT: "bold red",
    Status.ERROR: "bold red", Status.PENDING_CONSENT: "cyan",
}
OUTCOME_STYLES = {"rotated": "green", "skipped": "dim", "needs-consent": "bold red",
                  "error": "bold red", "deferred": "yellow", "imported": "green",
                  "failed": "bold red", "ok": "green"}


def wide_console() -> Console:
    """stdout for `--wide`: no width at all to fit in (rich never prints wider than its
    console, whatever the table asks for)."""
    return Console(width=100_000, soft_wrap=False, highlight=False,
                   no_color=bool(os.environ.get("NO_COLOR")) or None)


def consoles() -> tuple[Console, Console]:
    """(stdout, stderr) consoles; colour only on a terminal and never with NO_COLOR.

    Off a terminal rich would wrap tables at 80 columns; scripts get `--json`, and people who
    pipe to a pager get whole lines.
    """
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    out = Console(width=width, soft_wrap=False, highlight=False)
    err = Console(stderr=True, highlight=False)
    return out, err


def plural(count: int, word: str) -> str:
    """ "1 error", "2 errors" """
    return f"{count} {word}{'' if count == 1 else 's'}"


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def day(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d") if value else "-"


def dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)


# -- credentials ------------------------------------------------------------------------------


def credential_json(credential: Credential, now: datetime, warn_days: int) -> dict[str, Any]:
    latest = credential.latest
    consented = latest is not None and not latest.is_placeholder
    reason = credential.reason(now, warn_days)
    return {
        "id": credential.id,
        "environment": credential.environment,
        "product": credential.product,
        "marketplace": credential.marketplace,
        "tenant_id": credential.tenant_id,
        "model": "cpv" if credential.is_cpv else "own-app",
        "client_id": credential.client_id,
        "status": credential.status(now, warn_days).value,
        "stored_status": credential.stored_status.value,
        "secret_id": credential.secret_id,
        "token_obtained_at": iso(latest.obtained_at) if consented else None,
        "token_source": latest.source.value if consented and latest.source else None,
        "token_expires_on": iso(latest.expires_on) if consented else None,
        "days_until_token_expiry": credential.days_until_token_expiry(now),
        "secret_expires_on": iso(credential.secret_expires_on),
        "days_until_secret_expiry": credential.days_until_secret_expiry(now),
        "consented_by": (latest.consented_by or None) if consented else None,
        "mfa": latest.mfa if consented else None,
        "roles": list(latest.roles) if consented else [],
        "last_validated_at": iso(credential.last_validated_at),
        "last_validation": credential.last_validation,
        # why the status is not active (null when it is): code, meaning, action, command, when
        "reason": reason.as_dict(credential.id) if reason else None,
    }


def version_json(version: TokenVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "secret_id": version.secret_id,
        "enabled": version.enabled,
        "status": version.status.value,
        "source": version.source.value if version.source else None,
        "obtained_at": iso(version.obtained_at),
        "not_before": iso(version.not_before),
        "expires_on": iso(version.expires_on),
        "consented_by": version.consented_by or None,
        "mfa": version.mfa,
        "roles": list(version.roles),
        "validated_at": iso(version.check.at) if version.check else None,
        "validation": version.check.result if version.check else None,
        "reason": version.reason.as_dict(version.tags.get("credential", ""))
        if version.reason else None,
    }


def status_text(status: Status | str) -> Text:
    status = Status(status)
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def days_text(days: int | None, warn_days: int) -> Text:
    if days is None:
        return Text("-", style="dim")
    style = "bold red" if days < 0 else "yellow" if days <= warn_days else ""
    return Text(str(days), style=style)


# what the `why` column says: AADSTS codes as they are, the broker's own reasons in two words
SHORT_REASONS = {
    "not-consented": "not consented", "app-changed": "app changed",
    "token-expired": "token expired", "token-expiring": "token expiring",
    "secret-expired": "secret expired", "secret-expiring": "secret expiring",
    "token-and-secret-expiring": "token+secret", "no-mfa": "no MFA",
    "partner-center": "Partner Center", "rotation-failed": "rotation failed",
    "unknown": "unknown",
}


def short_reason(item: dict[str, Any]) -> Text:
    reason = item.get("reason")
    if not reason:
        return Text("-", style="dim")
    return Text(SHORT_REASONS.get(reason["code"], reason["code"]))


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def fitted_table(header: list[str], rows: list[list[Any]], *, width: int | None,
                 title: str | None = None, flex: int = 0,
                 right: tuple[int, ...] = ()) -> Table:
    """A table one line per row: every column as wide as its longest cell, except the `flex`
    column, which gives up what does not fit in `width` (cut with "…"; never below 12).
    `width=None` is `--wide`: every cell whole, however long the line."""
    sizes = [max([len(h), *(len(_plain(r[i])) for r in rows)]) for i, h in enumerate(header)]
    if width is not None:
        others = sum(s for i, s in enumerate(sizes) if i != flex) + 2 * (len(sizes) - 1)
        sizes[flex] = max(12, min(sizes[flex], width - others))
    # no rules: two spaces between columns, as `kubectl get` and `docker ps` print them
    table = Table(title=title, title_justify="left", header_style="bold", box=None,
                  pad_edge=False, padding=(0, 1))
    for i, name in enumerate(header):
        table.add_column(name, width=sizes[i], no_wrap=True, overflow="ellipsis",
                         justify="right" if i in right else "left")
    for row in rows:
        table.add_row(*row)
    return table


def credentials_table(items: Iterable[dict[str, Any]], warn_days: int, *,
                      title: str | None = None, width: int | None = 80) -> Table:
    """`broker status`: one line per credential. Within `width`: id, environment, status, days
    until the token and the client secret expire, and why; `width=None` (`--wide`) adds the
    tenant, the last renewal and the secret identifier URL, uncut."""
    header = ["id", "env", "status", "token", "secret", "why"]
    if width is None:
        header += ["tenant", "renewed", "secret identifier URL"]
    rows = []
    for item in items:
        row = [
            item["id"], ENV_SHORT.get(item["environment"], item["environment"]),
            status_text(item["status"]),
            days_text(item["days_until_token_expiry"], warn_days),
            days_text(item["days_until_secret_expiry"], warn_days), short_reason(item),
        ]
        if width is None:
            renewal = "-"
            if item["token_obtained_at"]:
                renewal = f"{item['token_obtained_at'][:10]} {item['token_source'] or ''}"
            row += [item["tenant_id"], renewal.strip(), item["secret_id"]]
        rows.append(row)
    return fitted_table(header, rows, width=width, title=title, right=(3, 4))


ENV_SHORT = {"test": "test", "production": "prod"}


def list_table(items: Iterable[dict[str, Any]], *, width: int | None = 80) -> Table:
    """`broker credentials list`: one line per credential. Within `width`: id, environment,
    status, tenant and product (those two cut first); `width=None` (`--wide`) adds the
    marketplace and the app, and cuts nothing."""
    header = ["id", "env", "status", "tenant", "product"]
    if width is None:
        header += ["marketplace", "app"]
    rows = []
    for item in items:
        row = [item["id"], ENV_SHORT.get(item["environment"], item["environment"]),
               status_text(item["status"]), item["tenant_id"], item["product"]]
        if width is None:
            row += [item["marketplace"], item["client_id"] or "cpv"]
        else:
            row[3], row[4] = _cut(row[3], 18), _cut(row[4], 14)
        rows.append(row)
    return fitted_table(header, rows, width=width)


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size - 1] + "…"


def reason_lines(reason: dict[str, Any]) -> tuple[str, str]:
    """(what happened and when, what to do) for one `reason` of the JSON shape."""
    code = reason["code"]
    words = f"{code}: {reason['meaning']}" if code.startswith("AADSTS") \
        else reason["meaning"][:1].upper() + reason["meaning"][1:]
    todo = reason["action"]
    if reason.get("command"):
        todo += f" Run: {reason['command']}"
    return f"{words}{_reason_when(reason)}.", todo


def reasons_text(items: Iterable[dict[str, Any]]) -> list[str]:
    """Below a table: for each credential that is not active, why and what to do."""
    lines = []
    for item in items:
        if item.get("reason"):
            what, todo = reason_lines(item["reason"])
            lines += [f"{item['id']} ({item['status']}): {what}", f"  What to do: {todo}"]
    return lines


def _reason_when(reason: dict[str, Any]) -> str:
    at = reason.get("at")
    if not at:
        return ""
    when = at[:16].replace("T", " ") + " UTC"
    if reason.get("by"):
        return f" (found by {reason['by']} on {when})"
    verb = "expires" if reason["code"].endswith("expiring") else "since"
    if reason["code"] == "not-consented":
        verb = "registered"
    return f" ({verb} {when})"


def credential_detail(item: dict[str, Any], versions: list[dict[str, Any]]) -> list[Any]:
    """Key/value table of one credential, then its versions (newest first)."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    labels = [
        ("id", "id"), ("environment", "environment"), ("product", "product"),
        ("marketplace", "marketplace"), ("tenant", "tenant_id"), ("app", "model"),
        ("client id", "client_id"), ("status", "status"), ("secret identifier", "secret_id"),
        ("token obtained", "token_obtained_at"), ("token source", "token_source"),
        ("token expires", "token_expires_on"), ("client secret expires", "secret_expires_on"),
        ("consented by", "consented_by"), ("MFA", "mfa"), ("roles", "roles"),
        ("last validated", "last_validated_at"), ("last validation", "last_validation"),
        ("why", "reason"),
    ]
    for label, key in labels:
        value = item[key]
        if key == "status":
            value = status_text(value)
        elif key == "reason" and value:
            what, todo = reason_lines(value)
            value = Text(f"{what}\nWhat to do: {todo}")
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        elif value is None:
            value = Text("-", style="dim")
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        facts.add_row(label, value)
    table = Table(title="versions (a page, newest first; values are never shown)",
                  title_justify="left", header_style="bold")
    for column in ("version", "enabled", "status", "source", "obtained", "expires",
                   "consented by", "mfa"):
        table.add_column(column, overflow="fold")
    for v in versions:
        table.add_row(v["version"], "yes" if v["enabled"] else "no", status_text(v["status"]),
                      v["source"] or "-", (v["obtained_at"] or "-")[:19],
                      (v["expires_on"] or "-")[:10], v["consented_by"] or "-",
                      "yes" if v["mfa"] else "no")
    return [facts, table]


# -- operations -------------------------------------------------------------------------------


def rotation_json(summary) -> dict[str, Any]:
    return {
        "rotated": summary.rotated, "skipped": summary.skipped,
        "needs_consent": summary.needs_consent, "errors": summary.errors,
        "deferred": summary.deferred,
        "results": [
            {"credential_id": r.credential_id, "outcome": r.outcome, "version": r.version,
             "previous_version": r.previous_version, "message": r.message}
            for r in summary.results
        ],
    }


def rotation_table(summary) -> Table:
    table = Table(title="rotation", title_justify="left", header_style="bold")
    for column in ("id", "outcome", "new version", "message"):
        table.add_column(column, overflow="fold")
    for r in summary.results:
        table.add_row(r.credential_id, Text(r.outcome, style=OUTCOME_STYLES.get(r.outcome, "")),
                      r.version or "-", r.message)
    table.caption = (f"{summary.rotated} rotated, {summary.skipped} skipped, "
                     f"{summary.needs_consent} {'needs' if summary.needs_consent == 1 else 'need'}"
                     f" consent, {plural(summary.errors, 'error')}, {summary.deferred} deferred")
    return table


def validation_json(report) -> dict[str, Any]:
    return {"credential_id": report.credential_id, "ok": report.ok,
            "checked_at": iso(report.checked_at), "version": report.version, "mfa": report.mfa,
            "organization": report.organization, "message": report.message}


def validation_table(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="validation", title_justify="left", header_style="bold")
    for column in ("id", "result", "mfa", "organization", "message"):
        table.add_column(column, overflow="fold")
    for r in reports:
        table.add_row(r["credential_id"],
                      Text("ok", style="green") if r["ok"] else Text("failed", style="bold red"),
                      "yes" if r["mfa"] else "no", r["organization"] or "-", r["message"])
    return table


def import_json(report) -> dict[str, Any]:
    return {
        "imported": list(report.imported),
        "skipped": [{"id": cid, "reason": why} for cid, why in report.skipped],
        "failed": [{"id": cid, "reason": why} for cid, why in report.failed],
        "notes": dict(getattr(report, "notes", {}) or {}),
    }


def import_table(report) -> Table:
    table = Table(title="import", title_justify="left", header_style="bold")
    for column in ("id", "result", "details"):
        table.add_column(column, overflow="fold")
    for cid, result, why in report.rows():
        table.add_row(cid, Text(result, style=OUTCOME_STYLES.get(result, "")), why or "-")
    table.caption = (f"{len(report.imported)} imported, {len(report.skipped)} skipped, "
                     f"{len(report.failed)} failed")
    return table


def removed_json(removed) -> dict[str, Any]:
    return {"id": removed.id, "environment": removed.environment, "product": removed.product,
            "marketplace": removed.marketplace, "tenant_id": removed.tenant_id,
            "removed_on": iso(removed.removed_on), "purge_on": iso(removed.purge_on),
            "recovery_level": removed.recovery_level, "purgeable": removed.purgeable}


def removed_table(items: Iterable[dict[str, Any]], *, width: int | None = 80) -> Table:
    rows = [[item["id"], ENV_SHORT.get(item["environment"], item["environment"]),
             (item["removed_on"] or "-")[:10], (item["purge_on"] or "-")[:10],
             "yes" if item["purgeable"] else Text("protected", style="yellow")]
            for item in items]
    return fitted_table(["id", "env", "removed", "gone for good", "purge"], rows, width=width,
                        title="removed credentials (recover ID; purge ID where the vault allows)")
