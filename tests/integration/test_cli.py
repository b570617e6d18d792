"""The real `broker` command line, as separate processes, against the session devstack.

Every output of every command run here is scanned for token and secret values: none may appear,
except on stdout of `resolve --reveal`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.identity import DefaultAzureCredential

from broker.logs import PATTERNS, redact
from broker.vault import secret_client
from devstack import seed
from tests.integration.test_notify import smtp_server
from tests.support.browserless import consent_with_msal

ROOT = Path(__file__).resolve().parents[2]
RECORDED: list[tuple[tuple[str, ...], str]] = []  # (argv, output) that must hold no secret


def cli(*argv: str, env: dict[str, str], input: str | None = None, reveal: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m broker ...`; outputs are kept for the secret scan (reveal: stderr only)."""
    result = subprocess.run([sys.executable, "-m", "broker", *argv], env=env, input=input,
                            capture_output=True, text=True, timeout=timeout, cwd=env["_CWD"],
                            check=False)
    RECORDED.append((argv, result.stderr if reveal else result.stdout + result.stderr))
    return result


def cli_env(stack_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment an operator has after `source .devstack/env`, plus a private state dir."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("BROKER_", "AzureWebJobsStorage", "DEVSTACK_"))}
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return {**base, **stack_env, "BROKER_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1",
            "COLUMNS": "250", "PYTHONPATH": str(ROOT), "_CWD": str(cwd), **extra}


def leaked(text: str) -> list[str]:
    found = [p.pattern for p in PATTERNS if p.search(text)]
    found += [v[:12] + "..." for v in redact.registered() if v in text]
    return found


@pytest.fixture(autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    start = len(RECORDED)
    yield
    for argv, output in RECORDED[start:]:
        assert not leaked(output), f"`broker {' '.join(argv)}` printed a secret"


def mint_refresh_token(stack_env: dict[str, str], user: str = seed.PARTNER_ADMIN_UPN, *,
                       own_app: bool = False) -> str:
    """A refresh token from a real sign-in with MFA and consent, as the old tooling kept them."""
    client_id, secret = ((seed.PARTNER_APP_ID, seed.PARTNER_APP_SECRET) if own_app else
                         (seed.CPV_APP_ID, stack_env["BROKER_CPV_CLIENT_SECRET"]))
    result = consent_with_msal(stack_env["BROKER_AUTHORITY_HOST"], client_id, secret, user,
                               verify=stack_env["REQUESTS_CA_BUNDLE"])
    redact.register(result["refresh_token"])
    redact.register(result["access_token"])
    return result["refresh_token"]


def vault_value(stack_env: dict[str, str], url: str) -> str:
    """What the vault holds at `url` (read in-process; registered for the scan)."""
    from azure.keyvault.secrets import KeyVaultSecretIdentifier

    ident = KeyVaultSecretIdentifier(url)
    with DefaultAzureCredential() as credential, \
            secret_client(ident.vault_url, credential) as client:
        value = client.get_secret(ident.name, ident.version).value
    redact.register(value)
    return value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def add_args(cid: str, *extra: str) -> list[str]:
    return ["credentials", "add", "--id", cid, "--environment", "test", "--product",
            "Microsoft CSP", "--marketplace", "US", "--tenant-id", seed.PARTNER_TENANT_DOMAIN,
            *extra]


def import_one(env: dict[str, str], cid: str, token: str, tmp_path: Path, **fields: str):
    path = tmp_path / f"{cid}.json"
    path.write_text(json.dumps([{"id": cid, "environment": "test", "product": "Microsoft CSP",
                                 "marketplace": "US", "tenant_id": seed.PARTNER_TENANT_ID,
                                 "refresh_token": token, **fields}]))
    return cli("import", str(path), "--json", env=env)


@pytest.fixture
def env(devstack, tmp_path) -> dict[str, str]:
    return cli_env(devstack.env, tmp_path)


@pytest.fixture(scope="module")
def active(devstack, tmp_path_factory) -> tuple[str, dict[str, str]]:
    """One credential made active by importing a freshly consented token."""
    tmp = tmp_path_factory.mktemp("active")
    environment = cli_env(devstack.env, tmp)
    cid = unique("cli-active")
    result = import_one(environment, cid, mint_refresh_token(devstack.env), tmp)
    assert result.returncode == 0, result.stderr
    return cid, environment


# -- credentials ----------------------------------------------------------------------------------


def test_credential_life_cycle_from_the_command_line(env):
    cid = unique("cli-crud")
    added = cli(*add_args(cid), env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().endswith(f"/secrets/rt-{cid}")
    assert "pending consent" in added.stderr and f"broker invite {cid}" in added.stderr

    listed = json.loads(cli("credentials", "list", "--json", env=env).stdout)
    mine = [c for c in listed["credentials"] if c["id"] == cid]
    assert [(c["status"], c["model"], c["tenant_id"]) for c in mine] == [
        ("pending-consent", "cpv", "contoso.example")]
    assert cid in cli("credentials", "list", env=env).stdout

    assert cli("credentials", "edit", cid, "--product", "Azure Plan", env=env).returncode == 0
    shown = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    assert shown["product"] == "Azure Plan" and shown["status"] == "pending-consent"
    assert [v["status"] for v in shown["versions"]] == ["pending-consent"]

    unconfirmed = cli("credentials", "remove", cid, env=env, input="")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert cli("credentials", "remove", cid, "--yes", env=env).returncode == 0
    gone = cli("credentials", "show", cid, env=env)
    assert gone.returncode == 2 and f"No credential with id '{cid}'" in gone.stderr


def test_show_pages_through_versions_a_vault_request_a_page(devstack, env, tmp_path):
    from tests.support.broker import make_broker, spec

    broker = make_broker(devstack, tmp_path)
    cid = unique("cli-paged")
    added = broker.add_credential(spec(cid))
    for _ in range(29):  # 30 versions in all, every one a placeholder (no token needed)
        broker.vault.create_placeholder(spec(cid), now=added.latest.obtained_at)

    first = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    assert len(first["versions"]) == 25 and first["versions_next"]
    rest = json.loads(cli("credentials", "show", cid, "--json", "--page",
                          first["versions_next"], env=env).stdout)
    assert len(rest["versions"]) == 5 and rest["versions_next"] is None
    assert {v["version"] for v in first["versions"]}.isdisjoint(
        v["version"] for v in rest["versions"])
    text = cli("credentials", "show", cid, "--page-size", "10", env=env)
    assert text.returncode == 0 and "--page" in text.stderr

    foreign = cli("credentials", "show", cid, "--page", "https://attacker.example/x", env=env)
    assert foreign.returncode == 2 and "Traceback" not in foreign.stderr
    assert "page" in foreign.stderr.lower()


def test_own_app_secret_is_read_from_stdin_or_a_file_and_never_printed(env, tmp_path):
    cid = unique("cli-ownapp")
    redact.register(seed.PARTNER_APP_SECRET)
    added = cli(*add_args(cid, "--client-id", seed.PARTNER_APP_ID, "--client-secret-stdin",
                          "--secret-expires-on", "2099-12-31"),
                env=env, input=seed.PARTNER_APP_SECRET + "\n")
    assert added.returncode == 0, added.stderr
    assert vault_value(env, added.stdout.strip().replace("/rt-", "/cs-")) \
        == seed.PARTNER_APP_SECRET
    shown = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    assert (shown["model"], shown["client_id"], shown["secret_expires_on"][:10]) == (
        "own-app", seed.PARTNER_APP_ID, "2099-12-31")

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("a-new-client-secret-value-42\n")
    redact.register("a-new-client-secret-value-42")
    edited = cli("credentials", "edit", cid, "--client-secret-file", str(secret_file),
                 "--secret-expires-on", "2098-01-31", env=env)
    assert edited.returncode == 0, edited.stderr
    shown = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    assert shown["secret_expires_on"][:10] == "2098-01-31"

    no_secret = cli(*add_args(unique("cli-nosecret"), "--client-id", seed.PARTNER_APP_ID),
                    env=env)
    assert no_secret.returncode == 2 and "--client-secret-stdin" in no_secret.stderr


def test_invalid_input_exits_2_names_the_flags_and_writes_nothing(env):
    cid = unique("cli-bad")
    result = cli("credentials", "add", "--id", cid, "--environment", "test", "--product", "p",
                 "--marketplace", "m", "--tenant-id", "not a tenant", "--client-id", "nope",
                 "--client-secret-stdin", env=env, input="x-secret-value-123\n")
    assert result.returncode == 2
    assert "--tenant-id: Enter the partner tenant" in result.stderr
    assert "--client-id: Enter the app's client id" in result.stderr
    assert "Traceback" not in result.stderr
    listed = json.loads(cli("credentials", "list", "--json", env=env).stdout)
    assert cid not in [c["id"] for c in listed["credentials"]]


def test_a_missing_setting_is_named_with_exit_2(env):
    without = {k: v for k, v in env.items() if k != "BROKER_VAULT_URL"}
    result = cli("status", env=without)
    assert result.returncode == 2
    assert "BROKER_VAULT_URL is not set" in result.stderr and "source .devstack/env" in \
        result.stderr


def test_status_shows_days_until_expiry_and_the_url(active):
    cid, env = active
    result = cli("status", "--json", env=env)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    mine = next(c for c in data["credentials"] if c["id"] == cid)
    assert mine["status"] == "active" and mine["token_source"] in ("import", "rotation")
    assert 88 <= mine["days_until_token_expiry"] <= 90
    assert data["counts"]["active"] >= 1
    table = cli("status", "--wide", env=env).stdout
    line = next(line for line in table.splitlines() if cid in line)
    assert "active" in line and f"/secrets/rt-{cid}" in line


# -- rotate, validate, resolve ------------------------------------------------------------------


def test_rotate_stores_a_new_version_and_reports_it(active):
    cid, env = active
    before = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    result = cli("rotate", cid, "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rotated"], summary["results"][0]["outcome"]) == (1, "rotated")
    assert summary["results"][0]["previous_version"] == before["versions"][0]["version"]
    after = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
    assert after["versions"][0]["version"] == summary["results"][0]["version"]
    assert after["token_source"] == "rotation" and len(after["versions"]) == \
        len(before["versions"]) + 1


def test_rotate_of_an_unconsented_credential_exits_1_and_of_an_unknown_one_2(env):
    cid = unique("cli-pending")
    assert cli(*add_args(cid), env=env).returncode == 0
    result = cli("rotate", cid, "--json", env=env)
    assert result.returncode == 1
    assert [r["outcome"] for r in json.loads(result.stdout)["results"]] == ["needs-consent"]
    # an unknown id is invalid input, as for `credentials show`: exit 2, nothing rotated
    missing = cli("rotate", cid, unique("cli-missing"), "--json", env=env)
    assert missing.returncode == 2 and "nothing was rotated" in missing.stderr
    assert missing.stdout == ""


def test_rotate_due_reports_json_even_when_nothing_is_due(active):
    cid, env = active
    result = cli("rotate", "--due", "--json", env=env)
    assert result.returncode in (0, 1)  # other tests' credentials share this vault
    assert cid not in [r["credential_id"] for r in json.loads(result.stdout)["results"]]


def test_validate_reports_ok_and_fails_for_unknown_ids(active):
    cid, env = active
    result = cli("validate", cid, "--json", env=env)
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["results"][0] | {"checked_at": None, "version": None} == {
        "credential_id": cid, "ok": True, "checked_at": None, "version": None, "mfa": True,
        "organization": seed.PARTNER_TENANT_NAME,
        "message": f"Valid: Partner Center answered as {seed.PARTNER_TENANT_NAME}."}
    missing = cli("validate", unique("cli-missing"), env=env)
    assert missing.returncode == 2 and "nothing was validated" in missing.stderr


def test_resolve_shows_metadata_and_reveals_only_when_asked(active):
    cid, env = active
    url = f"{env['BROKER_VAULT_URL'].rstrip('/')}/secrets/rt-{cid}"
    shown = cli("resolve", url, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    meta = json.loads(shown.stdout)
    assert (meta["credential_id"], meta["status"], meta["enabled"], meta["mfa"]) == (
        cid, "active", True, True)

    revealed = cli("resolve", url, "--reveal", env=env, reveal=True)
    assert revealed.returncode == 0
    assert revealed.stdout.strip() == vault_value(env, meta["secret_id"])
    assert revealed.stdout.count("\n") == 1  # the token alone, for $(...)

    claims = cli("resolve", url, "--access-token", "--json", env=env)
    assert claims.returncode == 0, claims.stderr
    summary = json.loads(claims.stdout)["access_token"]
    assert (summary["audience"], summary["tenant_id"], summary["user"], summary["mfa"]) == (
        seed.PARTNER_CENTER_RESOURCE, seed.PARTNER_TENANT_ID, seed.PARTNER_ADMIN_UPN, True)
    token = cli("resolve", url, "--access-token", "--reveal", env=env, reveal=True)
    assert token.returncode == 0 and token.stdout.startswith("eyJ")


def test_resolve_refuses_what_is_not_a_secret_identifier(env):
    result = cli("resolve", "https://example.com/not/a/secret", env=env)
    assert result.returncode == 2 and "secret identifier" in result.stderr


def test_resolve_of_a_credential_without_consent_exits_1(env):
    cid = unique("cli-unconsented")
    url = cli(*add_args(cid), env=env).stdout.strip()
    result = cli("resolve", url, env=env)
    assert result.returncode == 1 and "consent" in result.stderr


# -- invite -----------------------------------------------------------------------------------


def test_invite_prints_a_link_and_can_email_it(devstack, tmp_path):
    with smtp_server() as (sink, port):
        env = cli_env(devstack.env, tmp_path, BROKER_SMTP_URL=f"smtp://127.0.0.1:{port}",
                      BROKER_PUBLIC_URL="http://localhost:47999")
        cid = unique("cli-invite")
        assert cli(*add_args(cid), env=env).returncode == 0
        plain = cli("invite", cid, "--ttl-hours", "2", env=env)
        assert plain.returncode == 0
        assert plain.stdout.startswith("http://localhost:47999/invite/")
        assert "single use" in plain.stderr
        mailed = cli("invite", cid, "--email", "admin@contoso.example", env=env)
        assert mailed.returncode == 0, mailed.stderr
    link = mailed.stdout.strip()
    assert link != plain.stdout.strip()
    assert sink.messages[0][1] == ["admin@contoso.example"]
    assert link in sink.messages[0][2].get_body(("plain",)).get_content()
    no_smtp = cli("invite", cid, "--email", env=cli_env(devstack.env, tmp_path))
    assert no_smtp.returncode == 1 and "could not be emailed" in no_smtp.stderr


def test_invite_for_an_unknown_credential_exits_2(env):
    assert cli("invite", unique("cli-missing"), env=env).returncode == 2


# -- broker dev ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dev(tmp_path: Path, port: int) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BROKER_", "IDENTITY_", "DEVSTACK_", "AzureWebJobsStorage"))}
    env.update(BROKER_STATE_DIR=str(tmp_path / "broker"), NO_COLOR="1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "dev", "--port", str(port), "--state-dir",
         str(tmp_path / "stack"), "--devstack-port-base", "0"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, env


def read_until(process: subprocess.Popen, marker: str, timeout: float = 45) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"no {marker!r} in:\n{''.join(seen)}\n{process.stderr.read()}")


def test_dev_starts_the_stack_prints_the_urls_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    process, _ = start_dev(tmp_path, port)
    try:
        banner = read_until(process, "Ctrl-C stops everything")
        for label in ("Consent site", "Operator sign-in", "Key Vault", "Entra ID",
                      "devstack admin", "source "):
            assert label in banner
        assert f"http://localhost:{port}/" in banner
        assert requests.get(f"http://localhost:{port}/healthz", timeout=5).status_code == 200
        stack_env = (tmp_path / "stack" / "env").read_text()
        assert "BROKER_VAULT_URL" in stack_env
        assert "BROKER_PUBLIC_URL" in (tmp_path / "stack" / "broker-env").read_text()
        # the banner's commands, run as printed: another shell, another directory, no
        # virtualenv activated and no BROKER_* variables
        lines = banner.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("Use the CLI"))
        commands = [lines[at + 1].strip(), lines[at + 2].strip()]
        shell_env = {k: v for k, v in os.environ.items()
                     if not k.startswith(("BROKER_", "DEVSTACK_", "VIRTUAL_ENV"))}
        shell_env["PATH"] = "/usr/bin:/bin"
        shell_env["COLUMNS"] = "80"
        ran = subprocess.run(["bash", "-c", " && ".join(commands)], env=shell_env, cwd="/",
                             capture_output=True, text=True, timeout=60, check=False)
        assert ran.returncode == 0, (commands, ran.stderr)
        assert "No credentials yet" in ran.stderr
        # the site's log holds the one-time sign-in link: for this user's eyes only
        logs = tmp_path / "stack" / "logs"
        assert "/auth/local?token=" in (logs / "consent_web.log").read_text()
        assert stat.S_IMODE(logs.stat().st_mode) == 0o700
        assert {stat.S_IMODE(f.stat().st_mode) for f in logs.iterdir()} == {0o600}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    assert "stopped." in err
    assert not (tmp_path / "stack" / "devstack.pid").exists()  # devstack stopped cleanly
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://localhost:{port}/healthz", timeout=2)
    assert (tmp_path / "stack" / "logs" / "consent_web.log").exists()


def test_dev_stops_all_and_shows_the_log_tail_when_a_child_dies(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process, _ = start_dev(tmp_path, taken.getsockname()[1])
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "consent_web exited with code" in err and "its last lines" in err
    assert "in use" in err or "Cannot listen" in err  # the child's own words, from its tail
    assert not (tmp_path / "stack" / "devstack.pid").exists()


def test_dev_outside_a_checkout_says_where_to_run_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                            "print(u.find_spec('devstack') is None)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    if probe.stdout.strip() != "True":
        pytest.skip("devstack is importable outside the checkout here: an editable install "
                    "from before it left the package (`make install` refreshes it)")
    result = subprocess.run([sys.executable, "-m", "broker", "dev", "--state-dir",
                             str(tmp_path / "stack")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "runs from a checkout of this repository" in result.stderr
    assert not (tmp_path / "stack").exists()  # nothing was started
