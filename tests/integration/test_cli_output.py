"""What `broker` prints for a person at an 80-column terminal and for a script at the end of a
pipe: one line per credential, header words whole, the reason for every status that is not
active, the same exit code for the same mistake everywhere, and silence when the reader of the
output goes away."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import (  # noqa: F401 - the autouse scan applies here too
    ROOT,
    add_args,
    cli,
    cli_env,
    no_secret_in_any_output,
)

STATUS_HEADER = ("id", "env", "status", "token", "secret", "why")
LIST_HEADER = ("id", "env", "status", "tenant", "product")


@pytest.fixture(scope="module")
def env80(devstack, tmp_path_factory) -> dict[str, str]:
    """An operator's shell 80 columns wide, with a few credentials of long ids registered."""
    env = cli_env(devstack.env, tmp_path_factory.mktemp("cli80"), COLUMNS="80")
    for n in range(3):
        cid = f"cli80-{n}-{'x' * 40}-{time.time_ns() % 10**8}"
        added = cli(*add_args(cid), env=env)
        assert added.returncode == 0, added.stderr
    return env


def table_rows(output: str, header: tuple[str, ...]) -> tuple[str, list[str]]:
    """The header line and the row lines of the first table in `output`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [header[0]]
                 and all(word in line.split() for word in header))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if set(line.strip()) <= {"─", "━", "-", " "}:
            continue
        rows.append(line)
    return lines[start], rows


@pytest.mark.parametrize(("argv", "header"), [
    (("status",), STATUS_HEADER),
    (("credentials", "list"), LIST_HEADER),
])
def test_tables_fit_80_columns_one_line_per_credential(env80, argv, header):
    listed = json.loads(cli("credentials", "list", "--json", env=env80).stdout)["credentials"]
    result = cli(*argv, env=env80)
    assert result.returncode == 0, result.stderr
    head, rows = table_rows(result.stdout, header)
    assert head.split() == list(header)  # every header word whole, on one line
    assert len(rows) == len(listed)  # one line per credential, none wrapped
    assert len(head.rstrip()) <= 80 and all(len(row.rstrip()) <= 80 for row in rows)
    ids = sorted(c["id"] for c in listed)
    assert [row.split()[0].rstrip("…") for row in rows] == \
        [i[:len(row.split()[0].rstrip("…"))] for i, row in zip(ids, rows, strict=True)]


def test_status_says_why_and_what_to_do_for_every_credential_that_is_not_active(env80):
    result = cli("status", env=env80)
    mine = [c for c in json.loads(cli("status", "--json", env=env80).stdout)["credentials"]
            if c["id"].startswith("cli80-")]
    assert mine and all(c["reason"]["code"] == "not-consented" for c in mine)
    assert mine[0]["reason"]["command"] == f"broker invite {mine[0]['id']}"
    _, rows = table_rows(result.stdout, STATUS_HEADER)
    assert any(row.split()[2] == "pending-consent" and "not consented" in row for row in rows)
    text = " ".join(result.stdout.split())  # prose may wrap; the words stay in order
    assert (f"{mine[0]['id']} (pending-consent): Registered, but nobody has consented yet "
            "(registered ") in text
    assert "What to do: An admin of the partner tenant signs in with MFA and consents" in text
    assert f"Run: broker invite {mine[0]['id']}" in text
    shown = json.loads(cli("credentials", "show", mine[0]["id"], "--json", env=env80).stdout)
    assert shown["reason"]["meaning"] == "registered, but nobody has consented yet"


def test_wide_shows_the_whole_secret_identifier_url_on_the_credential_s_line(env80):
    listed = json.loads(cli("status", "--json", env=env80).stdout)["credentials"]
    result = cli("status", "--wide", env=env80)
    for credential in listed:
        line = next(line for line in result.stdout.splitlines()
                    if line.startswith(credential["id"] + " "))
        assert credential["secret_id"] in line and credential["tenant_id"] in line


@pytest.mark.parametrize("argv", [
    ("credentials", "show", "no-such-credential"),
    ("rotate", "no-such-credential"),
    ("validate", "no-such-credential"),
    ("invite", "no-such-credential"),
    ("credentials", "recover", "no-such-credential"),
])
def test_an_unknown_id_is_exit_2_for_every_command(env80, argv):
    result = cli(*argv, env=env80)
    assert result.returncode == 2, (argv, result.stderr)
    assert "no-such-credential" in result.stderr and "Traceback" not in result.stderr


def test_rotate_with_one_unknown_id_rotates_nothing(env80):
    known = json.loads(cli("credentials", "list", "--json", env=env80).stdout)["credentials"][0]
    result = cli("rotate", known["id"], "no-such-credential", env=env80)
    assert result.returncode == 2 and "nothing was rotated" in result.stderr


def test_a_closed_pipe_is_a_quiet_exit_141(env80):
    """`broker credentials list --json | head -c1`: the reader goes away before we write."""
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "credentials", "list", "--json"], env=env80,
        cwd=env80["_CWD"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the CLI has loaded its settings and listed the vault
    _, stderr = process.communicate(timeout=60)
    assert stderr.decode() == ""
    assert process.returncode == 141


def test_the_vault_s_url_and_the_cause_are_named_when_it_is_down(env80, tmp_path):
    down = {**env80, "BROKER_VAULT_URL": "https://127.0.0.1:9/", "_CWD": str(tmp_path)}
    result = cli("status", env=down)
    assert result.returncode == 1
    assert "Key Vault at https://127.0.0.1:9 could not be reached: Connection refused." \
        in result.stderr
    assert "ServiceRequestError" not in result.stderr and "will be retried" not in result.stderr


def test_the_state_dir_is_the_same_from_any_working_directory(env80, tmp_path):
    """Without BROKER_STATE_DIR the CLI keeps its signing key in the checkout, not in the
    folder it happens to run from (another key would make its invite links 404 on the site).
    A key of its own is what it uses without a config vault (with one, the key is the vault's
    `broker-secret-key`, the same from anywhere), so the config vault is left out here."""
    elsewhere = {k: v for k, v in env80.items()
                 if k not in ("BROKER_STATE_DIR", "BROKER_CONFIG_VAULT_URL")}
    elsewhere["_CWD"] = str(tmp_path)
    cid = json.loads(cli("credentials", "list", "--json", env=env80).stdout)["credentials"][0]
    result = cli("invite", cid["id"], env=elsewhere)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".broker").exists()
    assert (ROOT / ".broker" / "secret-key").exists()


def test_the_make_run_banner_prints_commands_that_work_as_printed():
    from broker.cli.dev import cli_command

    command = cli_command()
    assert Path(command).is_absolute() and Path(command).name == "broker"
    assert re.fullmatch(r"\S+", command)
    out = subprocess.run([command, "--help"], capture_output=True, text=True, cwd="/",
                         check=False)
    assert out.returncode == 0 and "Exit codes" in out.stdout
