"""What a `broker` command line may say: argparse, and the cross-argument rules it cannot express.

Nothing here reads settings or loads an SDK, so `broker --help` works anywhere and at once.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from broker.cli.exits import PARTNER_CENTER_DEFAULT_SCOPE, UsageError

SECRET_FLAGS = ("--client-secret", "--secret", "--refresh-token", "--token")
DESCRIPTION = """\
`broker` (also `python -m broker`): the operator's command line.

Exit codes scripts can trust: 0 all went well, 1 something failed (a rotation, a validation, an
import row, an unreachable service), 2 usage or invalid input such as an unknown credential id
(nothing was changed), 130 interrupted, 141 the reader of the output went away (`| head`).
Errors are one message and a hint on stderr, never a traceback (`--debug` shows one). No
command prints a token or a secret, except `resolve --reveal`."""


def build_parser() -> argparse.ArgumentParser:
    parser = _parser("broker", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress to stderr (-vv for debug)")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of unexpected errors (never secret values)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = _sub(sub, "dev", "start devstack, the consent site and a rotation worker")
    dev.add_argument("--port", type=_port, default=47400, help="consent site port (47400)")
    dev.add_argument("--state-dir", type=Path, default=Path(".devstack"),
                     help="devstack state directory (.devstack)")
    dev.add_argument("--devstack-port-base", type=int, default=None, metavar="N",
                     help="devstack's first port (its default 47440; 0 picks free ports)")

    creds = _sub(sub, "credentials", "register, inspect, change and remove credentials")
    csub = creds.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = _sub(csub, "list", "list credentials (no values)")
    lst.add_argument("--environment", choices=("test", "production"))
    lst.add_argument("--removed", action="store_true",
                     help="removed credentials Key Vault can still recover")
    _wide_flag(lst)
    _json_flag(lst)
    show = _sub(csub, "show", "one credential with its token versions (no values)")
    show.add_argument("id")
    show.add_argument("--page", metavar="NEXT", default=None,
                      help="the next page of versions, as the previous page named it")
    show.add_argument("--page-size", type=int, default=25, choices=range(1, 26),
                      metavar="1-25", help="versions per page (one vault request each)")
    _json_flag(show)
    add = _sub(csub, "add", "register a credential; it is pending consent until an admin signs in")
    _spec_arguments(add, required=True)
    edit = _sub(csub, "edit", "change a credential; a new tenant or app needs consent again")
    _spec_arguments(edit, required=False)
    remove = _sub(csub, "remove", "soft-delete a credential (recoverable in Key Vault for 90 days)")
    remove.add_argument("id")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    recover = _sub(csub, "recover", "undo a removal: the credential comes back with its versions")
    recover.add_argument("id")
    purge = _sub(csub, "purge", "delete a removed credential for good, freeing its id (not "
                                "possible in vaults with purge protection)")
    purge.add_argument("id")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    invite = _sub(sub, "invite", "a signed, expiring, single-use consent link for an admin")
    invite.add_argument("id")
    invite.add_argument("--ttl-hours", type=_positive_float, default=None, metavar="H",
                        help="link lifetime (BROKER_INVITE_TTL_HOURS, 24)")
    invite.add_argument("--email", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="also email the link (to ADDRESS, or to BROKER_NOTIFY_EMAIL)")

    rotate = _sub(sub, "rotate", "redeem tokens now and store the fresh ones as new versions")
    rotate.add_argument("ids", nargs="*", metavar="ID")
    which = rotate.add_mutually_exclusive_group()
    which.add_argument("--due", action="store_true", help="those due by age or expiry")
    which.add_argument("--all", action="store_true", help="every consented credential")
    _json_flag(rotate)

    validate = _sub(sub, "validate", "redeem, check MFA and call Partner Center; exit 1 on failure")
    validate.add_argument("ids", nargs="*", metavar="ID")
    validate.add_argument("--all", action="store_true", help="every credential")
    _json_flag(validate)

    resolve = _sub(sub, "resolve", "what a consumer gets for a secret identifier URL")
    resolve.add_argument("url", metavar="SECRET_IDENTIFIER_URL")
    resolve.add_argument("--reveal", action="store_true",
                         help="print the token itself (refresh token, or access token)")
    resolve.add_argument("--access-token", action="store_true",
                         help="make an access token from it (claims only unless --reveal)")
    resolve.add_argument("--scope", default=None, metavar="S",
                         help=f"access token scope ({PARTNER_CENTER_DEFAULT_SCOPE})")
    _json_flag(resolve)

    imp = _sub(sub, "import", "migrate tokens kept elsewhere (CSV or JSON) into the vault")
    imp.add_argument("file", type=Path)
    _json_flag(imp)

    status = _sub(sub, "status", "a table of credentials with days until expiry")
    status.add_argument("--environment", choices=("test", "production"))
    _wide_flag(status)
    _json_flag(status)

    _sub(sub, "worker", "run the rotation worker in this process until Ctrl-C")
    return parser


def check(args: argparse.Namespace) -> None:
    """Cross-argument rules argparse cannot express; UsageError names the fix."""
    if args.command == "rotate":
        if args.ids and (args.due or args.all):
            raise UsageError("name credentials or use --due/--all, not both")
        if not args.ids and not (args.due or args.all):
            raise UsageError("name the credentials to rotate, or use --due or --all")
    elif args.command == "validate":
        if args.ids and args.all:
            raise UsageError("name credentials or use --all, not both")
        if not args.ids and not args.all:
            raise UsageError("name the credentials to validate, or use --all")
    elif args.command == "credentials" and args.action == "list":
        if args.removed and args.wide:
            raise UsageError("--wide applies to the credentials, not to --removed")
    elif args.command == "resolve":
        if args.scope and not args.access_token:
            raise UsageError("--scope applies to --access-token only")
        if args.json and args.reveal:
            raise UsageError("--reveal prints the bare token; it does not combine with --json")
    elif args.command == "credentials" and args.action in ("add", "edit"):
        if args.client_secret_stdin and args.client_secret_file:
            raise UsageError("use one of --client-secret-stdin and --client-secret-file")
        if args.action == "edit" and args.cpv and (
            args.client_id or args.client_secret_stdin or args.client_secret_file
            or args.secret_expires_on
        ):
            raise UsageError("--cpv clears the app; it does not combine with client options")


class _Parser(argparse.ArgumentParser):
    """Never echo a stray argument value: it may be a secret typed in the wrong place."""

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            shown = [a.split("=", 1)[0] if a.startswith("-") else "<value>" for a in extras]
            self.error("unrecognized arguments: " + " ".join(shown))
        return parsed


def _parser(prog: str, **kwargs) -> argparse.ArgumentParser:
    return _Parser(prog=prog, allow_abbrev=False, **kwargs)


def _sub(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)


def _wide_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true",
                        help="every column, uncut (tenant, last renewal, secret identifier URL); "
                             "wider than 80 columns")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _spec_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    if required:
        parser.add_argument("--id", required=True, help="slug: a-z, 0-9 and '-', max 63")
    else:
        parser.add_argument("id")
    parser.add_argument("--environment", required=required, choices=("test", "production"))
    parser.add_argument("--product", required=required)
    parser.add_argument("--marketplace", required=required)
    parser.add_argument("--tenant-id", required=required, help="partner tenant: GUID or domain")
    parser.add_argument("--client-id", default=None,
                        help="the partner's own app (GUID); leave out for the CPV model")
    parser.add_argument("--client-secret-stdin", action="store_true",
                        help="read the client secret from stdin (prompted without echo on a tty)")
    parser.add_argument("--client-secret-file", type=Path, default=None, metavar="F",
                        help="read the client secret from file F")
    parser.add_argument("--secret-expires-on", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="the client secret's expiry date")
    if not required:
        parser.add_argument("--cpv", action="store_true",
                            help="switch to the CPV model (clears client id and secret)")
    parser.add_argument(*SECRET_FLAGS, dest="_secret_argument", action=_RefuseSecret, nargs="?",
                        help=argparse.SUPPRESS)


class _RefuseSecret(argparse.Action):
    """A secret on the command line lands in shell history and `ps`: refuse it by name only."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string}: never pass a secret as an argument "
                     "(it would land in shell history and `ps`); use --client-secret-stdin "
                     "or --client-secret-file")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 1..65535")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value
