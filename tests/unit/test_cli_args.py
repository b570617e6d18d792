"""The command line's grammar: what parses, what is refused with exit 2, and that a secret typed
as an argument is never echoed back."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from broker.cli import main
from broker.cli.commands import _invalid, _read_secret
from broker.cli.exits import UsageError
from broker.cli.parser import build_parser, check
from broker.errors import CredentialNotFound, InvalidInput


def parse(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    check(args)
    return args


def refused(capsys, *argv: str) -> str:
    """Run the real entry point; it must exit 2 and say why on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["status"], {"command": "status", "json": False, "environment": None}),
    (["status", "--json", "--environment", "test"], {"json": True, "environment": "test"}),
    (["credentials", "list", "--json"], {"action": "list", "json": True}),
    (["credentials", "show", "contoso"], {"action": "show", "id": "contoso", "json": False}),
    (["credentials", "remove", "contoso", "--yes"], {"action": "remove", "yes": True}),
    (["invite", "contoso"], {"id": "contoso", "ttl_hours": None, "email": None}),
    (["invite", "contoso", "--ttl-hours", "2.5", "--email"], {"ttl_hours": 2.5, "email": ""}),
    (["invite", "contoso", "--email", "admin@contoso.example"],
     {"email": "admin@contoso.example"}),
    (["rotate", "a", "b"], {"ids": ["a", "b"], "due": False, "all": False}),
    (["rotate", "--due"], {"ids": [], "due": True}),
    (["rotate", "--all", "--json"], {"all": True, "json": True}),
    (["validate", "--all"], {"all": True, "ids": []}),
    (["validate", "x"], {"ids": ["x"]}),
    (["resolve", "https://v.vault.azure.net/secrets/rt-x"],
     {"reveal": False, "access_token": False, "scope": None}),
    (["resolve", "https://v/secrets/rt-x", "--access-token", "--scope", "s/.default"],
     {"access_token": True, "scope": "s/.default"}),
    (["import", "tokens.csv"], {"file": Path("tokens.csv")}),
    (["worker"], {"command": "worker"}),
    (["dev"], {"port": 47400, "state_dir": Path(".devstack"), "devstack_port_base": None}),
    (["dev", "--port", "8080", "--state-dir", "/tmp/x", "--devstack-port-base", "0"],
     {"port": 8080, "state_dir": Path("/tmp/x"), "devstack_port_base": 0}),
    (["-v", "--debug", "status"], {"verbose": 1, "debug": True}),
])
def test_valid_command_lines_parse(argv, expected):
    args = vars(parse(*argv))
    assert {k: args[k] for k in expected} == expected


def test_add_takes_every_field_and_no_secret_value():
    args = parse("credentials", "add", "--id", "c1", "--environment", "production",
                 "--product", "CSP", "--marketplace", "EU", "--tenant-id", "contoso.example",
                 "--client-id", "00000000-0000-0000-0000-000000000001",
                 "--client-secret-stdin", "--secret-expires-on", "2031-02-03")
    assert (args.id, args.environment, args.product, args.marketplace, args.tenant_id,
            args.client_id, args.client_secret_stdin, args.secret_expires_on) == (
        "c1", "production", "CSP", "EU", "contoso.example",
        "00000000-0000-0000-0000-000000000001", True, date(2031, 2, 3))


def test_edit_takes_the_id_positionally_and_every_field_optionally():
    args = parse("credentials", "edit", "c1", "--product", "New")
    assert (args.id, args.product, args.tenant_id, args.cpv) == ("c1", "New", None, False)


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["credentials"], "the following arguments are required: ACTION"),
    (["credentials", "add", "--id", "x"], "the following arguments are required"),
    (["credentials", "add", "--id", "x", "--environment", "staging", "--product", "p",
      "--marketplace", "m", "--tenant-id", "t"], "invalid choice: 'staging'"),
    (["credentials", "add", "--id", "x", "--environment", "test", "--product", "p",
      "--marketplace", "m", "--tenant-id", "t", "--secret-expires-on", "31/12/2030"],
     "'31/12/2030' is not a date (YYYY-MM-DD)"),
    (["invite", "x", "--ttl-hours", "0"], "must be a positive number"),
    (["invite", "x", "--ttl-hours", "nan"], "must be a positive number"),
    (["invite", "x", "--ttl-hours", "soon"], "'soon' is not a number"),
    (["dev", "--port", "70000"], "a port is 1..65535"),
    (["rotate", "--due", "--all"], "not allowed with argument"),
    (["status", "--jsno"], "unrecognized arguments: --jsno"),
    (["status", "--stat"], "unrecognized arguments: --stat"),  # no abbreviations of --json
])
def test_bad_command_lines_exit_2_with_a_message(capsys, argv, message):
    assert message in refused(capsys, *argv)


@pytest.mark.parametrize("argv, message", [
    (["rotate"], "name the credentials to rotate, or use --due or --all"),
    (["rotate", "a", "--due"], "name credentials or use --due/--all, not both"),
    (["validate"], "name the credentials to validate, or use --all"),
    (["validate", "a", "--all"], "name credentials or use --all, not both"),
    (["resolve", "https://v/secrets/rt-x", "--scope", "s"], "--scope applies to --access-token"),
    (["resolve", "https://v/secrets/rt-x", "--reveal", "--json"], "does not combine with --json"),
    (["credentials", "edit", "x", "--client-secret-stdin", "--client-secret-file", "f"],
     "use one of --client-secret-stdin and --client-secret-file"),
    (["credentials", "edit", "x", "--cpv", "--client-id", "y"], "--cpv clears the app"),
])
def test_inconsistent_command_lines_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message.replace("-", r"\-").replace("/", r"\/")):
        parse(*argv)


@pytest.mark.parametrize("flag", ["--client-secret", "--secret", "--refresh-token", "--token"])
def test_a_secret_given_as_an_argument_is_refused_without_echoing_it(capsys, flag):
    err = refused(capsys, "credentials", "add", "--id", "x", "--environment", "test",
                  "--product", "p", "--marketplace", "m", "--tenant-id", "t",
                  flag, "s3cr3t-value-do-not-echo")
    assert "never pass a secret as an argument" in err
    assert "s3cr3t-value-do-not-echo" not in err


def test_a_secret_with_equals_sign_is_refused_without_echoing_it(capsys):
    err = refused(capsys, "credentials", "edit", "x", "--client-secret=s3cr3t-value-eq")
    assert "s3cr3t-value-eq" not in err


def test_stray_values_are_not_echoed(capsys):
    err = refused(capsys, "status", "0.AXYZ-looks-like-a-token", "--wat=also-secret")
    assert "unrecognized arguments: <value> --wat" in err
    assert "0.AXYZ" not in err and "also-secret" not in err


def test_help_works_without_any_settings(capsys, monkeypatch):
    monkeypatch.delenv("BROKER_VAULT_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["rotate", "--help"])
    assert exit_info.value.code == 0
    assert "--due" in capsys.readouterr().out


# -- reading the client secret -----------------------------------------------------------------


def secret_args(**values) -> SimpleNamespace:
    return SimpleNamespace(**{"client_secret_file": None, "client_secret_stdin": False, **values})


def test_secret_is_read_from_a_file_without_the_trailing_newline(tmp_path):
    path = tmp_path / "secret"
    path.write_text("file-secret-value\n")
    assert _read_secret(secret_args(client_secret_file=path)) == "file-secret-value"


def test_secret_is_read_from_piped_stdin(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("piped-secret-value\n"))
    assert _read_secret(secret_args(client_secret_stdin=True)) == "piped-secret-value"


def test_no_secret_option_means_no_secret():
    assert _read_secret(secret_args()) is None


@pytest.mark.parametrize("content", [b"", b"\n", b"two\nlines", b"x" * 20000, b"\xff\xfe"])
def test_an_empty_multi_line_huge_or_binary_secret_is_refused(tmp_path, content):
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match="client_secret"):
        _read_secret(secret_args(client_secret_file=path))


def test_a_missing_secret_file_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput) as exc_info:
        _read_secret(secret_args(client_secret_file=tmp_path / "absent"))
    assert "cannot read" in exc_info.value.errors["client_secret_file"]


# -- error rendering -----------------------------------------------------------------------------


def test_field_errors_name_the_flags_of_credentials_add():
    args = parse("credentials", "add", "--id", "x", "--environment", "test", "--product", "p",
                 "--marketplace", "m", "--tenant-id", "t")
    message, lines = _invalid(args, InvalidInput(errors={"tenant_id": "Enter the tenant.",
                                                         "client_secret": "Enter it."}))
    assert message == "broker: invalid input:"
    assert lines == ["  --tenant-id: Enter the tenant.",
                     "  --client-secret-stdin/--client-secret-file: Enter it."]


def test_an_unknown_credential_is_one_line():
    message, lines = _invalid(parse("credentials", "show", "x"), CredentialNotFound("x"))
    assert (message, lines) == ("broker: No credential with id 'x'.", [])


# -- the documented --json shapes ------------------------------------------------------------------


def test_credential_json_has_the_documented_keys_and_no_value():
    from datetime import UTC, datetime, timedelta

    from broker.cli.render import credential_json, version_json
    from broker.credentials import Credential, Status, TokenVersion

    now = datetime(2030, 1, 1, tzinfo=UTC)
    version = TokenVersion(
        version="a" * 32, secret_id="https://v/secrets/rt-c1/" + "a" * 32, created_on=now,
        not_before=now, expires_on=now + timedelta(days=90), enabled=True,
        tags={"status": "active", "source": "rotation", "obtained_at": now.isoformat(),
              "consented_by": "admin@contoso.example", "mfa": "true", "roles": "Admin Agent"})
    credential = Credential(id="c1", environment="test", product="p", marketplace="m",
                            tenant_id="contoso.example", client_id=None,
                            stored_status=Status.ACTIVE, secret_id="https://v/secrets/rt-c1",
                            latest=version)
    item = credential_json(credential, now, 30)
    assert list(item) == [
        "id", "environment", "product", "marketplace", "tenant_id", "model", "client_id",
        "status", "stored_status", "secret_id", "token_obtained_at", "token_source",
        "token_expires_on", "days_until_token_expiry", "secret_expires_on",
        "days_until_secret_expiry", "consented_by", "mfa", "roles", "last_validated_at",
        "last_validation", "reason"]
    assert (item["model"], item["status"], item["days_until_token_expiry"],
            item["token_expires_on"]) == ("cpv", "active", 90, "2030-04-01T00:00:00Z")
    assert list(version_json(version)) == [
        "version", "secret_id", "enabled", "status", "source", "obtained_at", "not_before",
        "expires_on", "consented_by", "mfa", "roles", "validated_at", "validation", "reason"]


def test_the_rotation_summary_counts_in_words_that_agree():
    from rich.console import Console

    from broker.cli.render import rotation_table
    from broker.rotation import RotationResult, RotationSummary

    summary = RotationSummary.of([
        RotationResult("a", "error", None, None, "x"),
        RotationResult("b", "needs-consent", None, None, "y")])
    console = Console(width=200, record=True, no_color=True)
    console.print(rotation_table(summary))
    text = " ".join(console.export_text().split())
    assert "1 needs consent, 1 error, 0 deferred" in text and "1 errors" not in text
