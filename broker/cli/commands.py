"""What each `broker` command does, through the `Broker` facade; `parser.py` only parses.

Every handler returns an exit code. Errors end here: a BrokerError becomes its message and hint
on stderr (exit 2 for input and settings, 1 otherwise); anything unexpected becomes one line
(a redacted traceback with `--debug`).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from broker.cli import render
from broker.cli.exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE_CLOSED,
    EXIT_USAGE,
    UsageError,
)
from broker.cli.parser import check
from broker.errors import (
    BrokerError,
    CredentialNotFound,
    InvalidInput,
    SettingsError,
    TransientFailure,
)
from broker.logs import configure, redact

MAX_SECRET_BYTES = 16 * 1024  # a client secret is ~40 characters; anything huge is a mistake
VALIDATE_CONCURRENCY = 4


class Context:
    """What handlers share: the parsed arguments, the consoles, and a lazily built Broker."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out, self.err = render.consoles()
        self.now = datetime.now(UTC)

    @cached_property
    def settings(self):
        from broker.settings import load_settings

        return load_settings()

    @cached_property
    def broker(self):
        from broker.service import Broker

        return Broker(self.settings)

    def json(self, data) -> None:
        print(render.dump(data), flush=True)

    @property
    def width(self) -> int | None:
        """What tables must fit in: the terminal's width, or None (uncut) with `--wide`."""
        return None if getattr(self.args, "wide", False) else self.out.width

    def table(self, table) -> None:
        """Print a table made for `width`; uncut ones may be wider than the terminal."""
        if self.width is None:
            render.wide_console().print(table, crop=False)
        else:
            self.out.print(table)

    def note(self, text: str) -> None:
        """A message for the person at the terminal (stderr, so stdout stays parseable),
        after whatever stdout holds, so that the two never interleave mid-line."""
        sys.stdout.flush()
        self.err.print(text, markup=False, highlight=False)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # a service logs what it does; a command only what went wrong (its output says the rest)
    louder = 1 if args.command == "worker" else 0
    configure(level=("WARNING", "INFO", "DEBUG")[min(louder + args.verbose, 2)])
    try:
        check(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        _print_error(f"broker {args.command}: error: {exc}")
        return EXIT_USAGE
    ctx = Context(args)
    handler = HANDLERS[args.command]
    try:
        return handler(ctx)
    except KeyboardInterrupt:
        _print_error("broker: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`broker ... | head -c1`): that is its choice, not our error
        _quiet_stdout()
        return EXIT_PIPE_CLOSED
    except UsageError as exc:
        _print_error(f"broker {args.command}: error: {exc}")
        return EXIT_USAGE
    except SettingsError as exc:
        hint = exc.hint
        if exc.setting == "BROKER_VAULT_URL":
            hint += (" With `make run` running: `source .devstack/env` in its checkout (the "
                     "banner prints the full path).")
        _print_error(f"broker: {exc}", hint)
        return EXIT_USAGE
    except InvalidInput as exc:
        message, details = _invalid(args, exc)
        _print_error(message, exc.hint, details)
        return EXIT_USAGE
    except BrokerError as exc:
        _print_error(f"broker: {exc}", person_hint(exc))
        return EXIT_FAILED
    except Exception as exc:  # a person gets one line, never a traceback by surprise
        if args.debug:
            _print_error(redact("".join(traceback.format_exception(exc))))
        else:
            _print_error(f"broker: unexpected error ({type(exc).__name__}); run again with "
                         "--debug for details")
        return EXIT_FAILED


FLAGS = {
    "id": "--id", "environment": "--environment", "product": "--product",
    "marketplace": "--marketplace", "tenant_id": "--tenant-id", "client_id": "--client-id",
    "client_secret": "--client-secret-stdin/--client-secret-file",
    "secret_expires_on": "--secret-expires-on",
}


def _invalid(args: argparse.Namespace, exc: InvalidInput) -> tuple[str, list[str]]:
    """One line per bad field, named as the person typed it (`--tenant-id`, not tenant_id)."""
    if isinstance(exc, CredentialNotFound):
        return f"broker: {exc}", []
    typed = args.command == "credentials" and getattr(args, "action", "") in ("add", "edit")
    joined = "; ".join(f"{name}: {text}" for name, text in exc.errors.items())
    lines = [f"  {FLAGS.get(name, name) if typed else name}: {text}"
             for name, text in exc.errors.items() if str(exc) == joined or text not in str(exc)]
    if exc.errors and str(exc) == joined:
        return "broker: invalid input:", lines
    return f"broker: {exc}", lines


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit cannot raise
    BrokenPipeError again (Python's own advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def person_hint(exc: BrokerError) -> str:
    """The error's hint, said to the person at the terminal: a TransientFailure's own hint
    speaks to the unattended jobs ("will be retried"), but nothing retries a command."""
    if isinstance(exc, TransientFailure):
        wait = f" in {exc.retry_after:g} s" if exc.retry_after else " in a minute"
        return (f"This is temporary: run the command again{wait}. If it keeps failing, check "
                "that Key Vault, Entra ID and storage are reachable from here.")
    return exc.hint


def _print_error(message: str, hint: str | None = None, details: list[str] | None = None) -> None:
    lines = [message, *(details or [])]
    if hint:
        lines.append(f"hint: {hint}")
    print(redact("\n".join(lines)), file=sys.stderr, flush=True)


# -- credentials ------------------------------------------------------------------------------


def credentials(ctx: Context) -> int:
    return CREDENTIAL_ACTIONS[ctx.args.action](ctx)


def credentials_list(ctx: Context) -> int:
    if ctx.args.removed:
        return _removed_list(ctx)
    found = ctx.broker.list_credentials(ctx.args.environment)
    warn = ctx.settings.warn_days
    items = [render.credential_json(c, ctx.now, warn) for c in found]
    if ctx.args.json:
        ctx.json({"credentials": items})
    elif not items:
        ctx.note("No credentials yet: `broker credentials add --help`.")
    else:
        ctx.table(render.list_table(items, width=ctx.width))
        _print_reasons(ctx, items)
    return EXIT_OK


def _removed_list(ctx: Context) -> int:
    removed = [r for r in ctx.broker.removed_credentials()
               if ctx.args.environment in (None, r.environment)]
    items = [render.removed_json(r) for r in removed]
    if ctx.args.json:
        ctx.json({"removed": items})
    elif not items:
        ctx.note("No removed credentials: Key Vault has none it could recover.")
    else:
        ctx.table(render.removed_table(items, width=ctx.out.width))
    return EXIT_OK


def _print_reasons(ctx: Context, items: list[dict]) -> None:
    """Why each credential that is not active is so, and what to do, after the table."""
    lines = render.reasons_text(items)
    if lines:
        ctx.out.print("")
        for line in lines:
            ctx.out.print(line, markup=False, highlight=False)


def credentials_show(ctx: Context) -> int:
    """The credential and one page of its versions (a credential may have hundreds: one vault
    request a page, `--page` for the next)."""
    credential = ctx.broker.get_credential(ctx.args.id)
    page, following = ctx.broker.versions_page(ctx.args.id, page_size=ctx.args.page_size,
                                               continuation=ctx.args.page)
    versions = [render.version_json(v) for v in page]
    item = render.credential_json(credential, ctx.now, ctx.settings.warn_days)
    if ctx.args.json:
        ctx.json({**item, "versions": versions, "versions_next": following})
    else:
        for part in render.credential_detail(item, versions):
            ctx.out.print(part)
        if following:
            ctx.note(f"More versions: broker credentials show {ctx.args.id} --page "
                     f"'{following}'")
    return EXIT_OK


def credentials_add(ctx: Context) -> int:
    from broker.credentials import CredentialSpec

    args = ctx.args
    if args.client_id and not (args.client_secret_stdin or args.client_secret_file):
        raise UsageError("an own-app credential (--client-id) needs its client secret: "
                         "--client-secret-stdin or --client-secret-file F")
    spec = CredentialSpec(
        id=args.id, environment=args.environment, product=args.product,
        marketplace=args.marketplace, tenant_id=args.tenant_id, client_id=args.client_id,
        client_secret=_read_secret(args), secret_expires_on=args.secret_expires_on,
    )
    credential = ctx.broker.add_credential(spec)
    ctx.note(f"Registered {credential.id}: pending consent.")
    ctx.note(f"Next: `broker invite {credential.id}` and have an admin of the partner tenant "
             "open the link.")
    print(credential.secret_id, flush=True)
    return EXIT_OK


def credentials_edit(ctx: Context) -> int:
    from broker.credentials import CredentialSpec, Status

    args = ctx.args
    existing = ctx.broker.get_credential(args.id)
    client_id = None if args.cpv else (args.client_id or existing.client_id)
    spec = CredentialSpec(
        id=existing.id,
        environment=args.environment or existing.environment,
        product=args.product or existing.product,
        marketplace=args.marketplace or existing.marketplace,
        tenant_id=args.tenant_id or existing.tenant_id,
        client_id=client_id, client_secret=_read_secret(args),
        secret_expires_on=args.secret_expires_on,
    )
    result = ctx.broker.edit(existing.id, spec)
    credential = result.credential
    if result.verified == "consent-needed" \
            and existing.stored_status is not Status.PENDING_CONSENT:
        ctx.note(f"Changed {credential.id}: the tenant or app changed, so it needs consent "
                 f"again (old token versions are kept, disabled). Next: "
                 f"`broker invite {credential.id}`.")
    elif result.verified == "verified":
        ctx.note(f"Changed {credential.id}: {result.message}")
    elif result.verified in ("needs-consent", "unverified"):
        ctx.note(f"Changed {credential.id}, with a problem: {result.message}")
        return EXIT_FAILED
    else:
        ctx.note(f"Changed {credential.id}.")
    return EXIT_OK


def credentials_remove(ctx: Context) -> int:
    credential = ctx.broker.get_credential(ctx.args.id)
    if not _confirmed(ctx, "removal", f"Remove credential {credential.id!r}? Its secrets are "
                      "soft-deleted and recoverable in Key Vault for the retention period."):
        ctx.note("Nothing removed.")
        return EXIT_OK
    ctx.broker.remove_credential(credential.id)
    ctx.note(f"Removed {credential.id}. Key Vault keeps it for its retention period: "
             f"`broker credentials recover {credential.id}` brings it back.")
    return EXIT_OK


def _confirmed(ctx: Context, what: str, question: str) -> bool:
    """--yes, or a yes typed at the terminal; without a terminal to ask on, a UsageError."""
    if ctx.args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"confirm the {what} with --yes (no terminal to ask on)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def credentials_recover(ctx: Context) -> int:
    credential = ctx.broker.recover_credential(ctx.args.id)
    ctx.note(f"Recovered {credential.id} with all its versions; it is "
             f"{credential.status(ctx.now, ctx.settings.warn_days).value}.")
    return EXIT_OK


def credentials_purge(ctx: Context) -> int:
    removed = ctx.broker.removed_credential(ctx.args.id)
    if not removed.purgeable:
        ctx.broker.purge_credential(removed.id)  # refuses, saying why and when Key Vault will
    if not _confirmed(ctx, "purge", f"Purge removed credential {removed.id!r} for good? It "
                      "cannot be recovered afterwards."):
        ctx.note("Nothing purged.")
        return EXIT_OK
    ctx.broker.purge_credential(removed.id)
    ctx.note(f"Purged {removed.id}: its id can be used again.")
    return EXIT_OK


def _read_secret(args: argparse.Namespace) -> str | None:
    """The client secret from stdin or a file, never from argv (shell history, `ps`)."""
    if args.client_secret_file:
        path: Path = args.client_secret_file
        try:
            data = path.read_bytes()[:MAX_SECRET_BYTES + 1]
        except OSError as exc:
            raise InvalidInput(errors={"client_secret_file": f"cannot read {path}: "
                                                             f"{exc.strerror}"}) from None
        try:
            text = data.decode("utf-8").strip() if len(data) <= MAX_SECRET_BYTES else ""
        except UnicodeDecodeError:
            text = ""
    elif args.client_secret_stdin:
        if sys.stdin.isatty():
            text = getpass.getpass("Client secret (not echoed): ").strip()
        else:
            text = sys.stdin.read(MAX_SECRET_BYTES + 1)
            text = text.strip() if len(text) <= MAX_SECRET_BYTES else ""
    else:
        return None
    if not text or "\n" in text:
        raise InvalidInput(errors={"client_secret": "Give the client secret alone, on one line "
                                                    "(it was empty, too long or not text)."})
    redact.register(text)
    return text


# -- invite, rotate, validate -------------------------------------------------------------------


def invite(ctx: Context) -> int:
    from broker.notify import Event

    args = ctx.args
    created = ctx.broker.create_invite(args.id, args.ttl_hours)
    credential = ctx.broker.get_credential(args.id)
    expires = created.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctx.note(f"Consent link for {credential.id} (single use, expires {expires}); any earlier "
             "link for it no longer works:")
    print(created.url, flush=True)
    if args.email is None:
        return EXIT_OK
    event = Event(
        kind="consent-invite", credential_id=credential.id,
        message=(f"Please consent for {credential.product} / {credential.marketplace} "
                 f"({credential.environment}) in partner tenant {credential.tenant_id}. The "
                 f"link works once and expires {expires}."),
        action=("Open the link, sign in with an Admin Agent account of the partner tenant "
                "using MFA, and accept the permissions."),
        invite_url=created.url,
    )
    to = [args.email] if args.email else None
    if ctx.broker.email(event, to):
        ctx.note(f"Emailed the link to {args.email or ctx.settings.notify_email}.")
        return EXIT_OK
    ctx.note("The link could not be emailed (see the log above; BROKER_SMTP_URL and a "
             "recipient are needed).")
    return EXIT_FAILED


def rotate(ctx: Context) -> int:
    from broker.credentials import Status

    args, service = ctx.args, ctx.broker
    if args.due:
        total = len(service.due())
        work = None
    elif args.all:
        everything = service.list_credentials()
        work = [c.id for c in everything if c.stored_status is not Status.PENDING_CONSENT]
        waiting = len(everything) - len(work)
        if waiting:
            ctx.note(f"{waiting} credential(s) pending consent are not rotated.")
        total = len(work)
    else:
        work = _known(service, list(dict.fromkeys(args.ids)), "rotated")
        total = len(work)
    if total == 0 and (work is not None or args.due):
        if args.json:
            ctx.json(render.rotation_json(service.rotate_many([])))
        else:
            ctx.note("Nothing to rotate.")
        return EXIT_OK
    with _progress(ctx, "rotating", total) as advance:
        if work is None:
            summary = service.rotate_due(progress=lambda _: advance())
        else:
            summary = service.rotate_many(work, progress=lambda _: advance())
    if args.json:
        ctx.json(render.rotation_json(summary))
    else:
        ctx.out.print(render.rotation_table(summary))
    failed = summary.needs_consent + summary.errors + summary.deferred
    return EXIT_FAILED if failed else EXIT_OK


def validate(ctx: Context) -> int:
    from broker.credentials import Status

    args, service = ctx.args, ctx.broker
    if args.all:
        everything = service.list_credentials()
        ids = [c.id for c in everything if c.stored_status is not Status.PENDING_CONSENT]
        if len(ids) < len(everything):
            ctx.note(f"{len(everything) - len(ids)} credential(s) pending consent are not "
                     "validated.")
    else:
        ids = _known(service, list(dict.fromkeys(args.ids)), "validated")
    if not ids:
        if args.json:
            ctx.json({"ok": True, "results": []})
        else:
            ctx.note("Nothing to validate.")
        return EXIT_OK
    with _progress(ctx, "validating", len(ids)) as advance:
        def one(credential_id: str) -> dict:
            try:
                report = render.validation_json(service.validate(credential_id))
            except CredentialNotFound as exc:
                report = _failed_validation(credential_id, str(exc))
            except BrokerError as exc:
                report = _failed_validation(credential_id, f"{exc} {person_hint(exc)}")
            advance()
            return report

        with ThreadPoolExecutor(VALIDATE_CONCURRENCY, thread_name_prefix="validate") as pool:
            reports = list(pool.map(one, ids))
    ok = all(r["ok"] for r in reports)
    if args.json:
        ctx.json({"ok": ok, "results": reports})
    else:
        ctx.out.print(render.validation_table(reports))
    return EXIT_OK if ok else EXIT_FAILED


def _known(service, ids: list[str], done: str) -> list[str]:
    """The ids, if every one names a credential; otherwise CredentialNotFound (exit 2, as for
    `credentials show`) before anything is done to any of them."""
    existing = {c.id for c in service.list_credentials()}
    unknown = [i for i in ids if i not in existing]
    if unknown:
        names = ", ".join(repr(i) for i in unknown)
        raise CredentialNotFound(unknown[0], f"No credential with id {names}; nothing was "
                                             f"{done}.")
    return ids


def _failed_validation(credential_id: str, message: str) -> dict:
    return {"credential_id": credential_id, "ok": False,
            "checked_at": render.iso(datetime.now(UTC)), "version": None, "mfa": False,
            "organization": None, "message": message}


class _progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, ctx: Context, label: str, total: int) -> None:
        self.bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=ctx.err, transient=True,
                            disable=not ctx.err.is_terminal)
        self.label, self.total = label, total

    def __enter__(self):
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        self.bar.stop()


# -- resolve, import, status, worker --------------------------------------------------------------


def resolve(ctx: Context) -> int:
    from broker.cli.resolve import resolve as do_resolve

    return do_resolve(ctx)


def import_(ctx: Context) -> int:
    report = ctx.broker.import_file(ctx.args.file)
    if ctx.args.json:
        ctx.json(render.import_json(report))
    else:
        ctx.out.print(render.import_table(report))
    return EXIT_FAILED if report.failed else EXIT_OK


def status(ctx: Context) -> int:
    found = ctx.broker.list_credentials(ctx.args.environment)
    warn = ctx.settings.warn_days
    items = [render.credential_json(c, ctx.now, warn) for c in found]
    counts = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    if ctx.args.json:
        ctx.json({"checked_at": render.iso(ctx.now), "counts": counts, "credentials": items})
    elif not items:
        ctx.note("No credentials yet: `broker credentials add --help`.")
    else:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        ctx.table(render.credentials_table(items, warn, title=f"credentials: {summary}",
                                           width=ctx.width))
        _print_reasons(ctx, items)
        if not ctx.args.wide:
            ctx.note("Days are until the token and the client secret expire. Secret identifier "
                     "URLs: `broker status --wide` or `broker credentials show ID`.")
    return EXIT_OK


def worker(ctx: Context) -> int:
    from broker.runtime.worker import run_worker

    code = run_worker(ctx.settings)
    return code if isinstance(code, int) else EXIT_OK


def dev(ctx: Context) -> int:
    from broker.cli.dev import run_dev

    return run_dev(ctx.args)


CREDENTIAL_ACTIONS = {
    "list": credentials_list, "show": credentials_show, "add": credentials_add,
    "edit": credentials_edit, "remove": credentials_remove, "recover": credentials_recover,
    "purge": credentials_purge,
}
HANDLERS = {
    "dev": dev, "credentials": credentials, "invite": invite, "rotate": rotate,
    "validate": validate, "resolve": resolve, "import": import_, "status": status,
    "worker": worker,
}
