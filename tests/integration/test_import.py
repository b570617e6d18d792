"""`broker import` against the session devstack: every token is proven by a redemption before it
is stored, bad rows change nothing, and running the same file twice is harmless."""

from __future__ import annotations

import csv
import json

import pytest

from broker.logs import redact
from broker.service import Broker
from broker.settings import load_settings
from devstack import seed
from tests.integration.test_cli import (  # noqa: F401 - the autouse scan applies here too
    cli,
    cli_env,
    mint_refresh_token,
    no_secret_in_any_output,
    unique,
    vault_value,
)

FIELDS = ["id", "environment", "product", "marketplace", "tenant_id", "client_id",
          "client_secret", "secret_expires_on", "refresh_token"]
DEAD_TOKEN = "0.AXYZ" + "deadbeef" * 20  # shaped like a refresh token; Entra never issued it


@pytest.fixture
def env(devstack, tmp_path) -> dict[str, str]:
    return cli_env(devstack.env, tmp_path)


def row(cid: str, token: str, **fields: str) -> dict[str, str]:
    return {"id": cid, "environment": "production", "product": "Microsoft CSP",
            "marketplace": "EU", "tenant_id": seed.PARTNER_TENANT_DOMAIN, "client_id": "",
            "client_secret": "", "secret_expires_on": "", "refresh_token": token, **fields}


def write_csv(path, rows: list[dict[str, str]]):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def show(env, cid: str) -> dict | None:
    result = cli("credentials", "show", cid, "--json", env=env)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_csv_import_stores_fresh_tokens_reports_failures_and_is_harmless_to_rerun(
        devstack, env, tmp_path):
    good, other, dead, invalid = (unique(p) for p in ("imp-good", "imp-other", "imp-dead",
                                                       "imp-invalid"))
    old_tokens = [mint_refresh_token(devstack.env), mint_refresh_token(devstack.env)]
    redact.register(DEAD_TOKEN)
    path = write_csv(tmp_path / "old-config.csv", [
        row(good, old_tokens[0]), row(dead, DEAD_TOKEN), row(other, old_tokens[1]),
        row(invalid, old_tokens[1], environment="staging"),
    ])

    first = cli("import", str(path), "--json", env=env)
    assert first.returncode == 1, first.stderr  # some rows failed
    report = json.loads(first.stdout)
    assert report["imported"] == [good, other]
    failed = {f["id"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {dead, invalid}
    assert failed[dead].startswith("line 3: Entra ID refused the refresh token: AADSTS")
    assert "line 5: " in failed[invalid] and "Choose test or production" in failed[invalid]
    listed = json.loads(cli("credentials", "list", "--json", env=env).stdout)["credentials"]
    assert not {dead, invalid} & {c["id"] for c in listed}  # nothing written for them

    stored = show(env, good)
    assert (stored["status"], stored["token_source"], stored["environment"]) == (
        "active", "import", "production")
    assert (stored["consented_by"], stored["mfa"], len(stored["versions"])) == (
        seed.PARTNER_ADMIN_UPN, True, 2)  # the placeholder, then the imported token
    fresh = vault_value(env, stored["versions"][0]["secret_id"])
    assert fresh.startswith("0.A") and fresh not in old_tokens  # redeemed, not copied

    again = cli("import", str(path), "--json", env=env)
    report = json.loads(again.stdout)
    assert report["imported"] == []
    assert {s["id"] for s in report["skipped"]} == {good, other}
    assert len(show(env, good)["versions"]) == 2  # nothing new written

    table = cli("import", str(path), env=env)
    assert "2 skipped, 2 failed" in table.stdout and good in table.stdout


def test_json_import_of_an_own_app_token_stores_its_client_secret(devstack, env, tmp_path):
    cid = unique("imp-ownapp")
    redact.register(seed.PARTNER_APP_SECRET)
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"credentials": [row(
        cid, mint_refresh_token(devstack.env, own_app=True), client_id=seed.PARTNER_APP_ID,
        client_secret=seed.PARTNER_APP_SECRET, secret_expires_on="2099-12-31")]}, indent=2))
    result = cli("import", str(path), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["imported"] == [cid]
    stored = show(env, cid)
    assert (stored["model"], stored["status"], stored["secret_expires_on"][:10]) == (
        "own-app", "active", "2099-12-31")
    cs_url = stored["secret_id"].replace("/rt-", "/cs-")
    assert vault_value(env, cs_url) == seed.PARTNER_APP_SECRET


def test_a_wrong_client_secret_fails_the_row_and_stores_nothing(devstack, env, tmp_path):
    cid = unique("imp-badsecret")
    redact.register("not-the-apps-secret-0123")
    path = write_csv(tmp_path / "t.csv", [row(
        cid, mint_refresh_token(devstack.env, own_app=True), client_id=seed.PARTNER_APP_ID,
        client_secret="not-the-apps-secret-0123", secret_expires_on="2099-12-31")])
    result = cli("import", str(path), "--json", env=env)
    assert result.returncode == 1
    (failure,) = json.loads(result.stdout)["failed"]
    assert "AADSTS7000215" in failure["reason"]
    assert show(env, cid) is None


def test_a_registered_credential_waiting_for_consent_becomes_active(devstack, env, tmp_path):
    cid = unique("imp-pending")
    assert cli("credentials", "add", "--id", cid, "--environment", "test", "--product", "CSP",
               "--marketplace", "US", "--tenant-id", seed.PARTNER_TENANT_DOMAIN,
               env=env).returncode == 0
    path = write_csv(tmp_path / "t.csv", [row(cid, mint_refresh_token(devstack.env),
                                              environment="", product="", marketplace="")])
    result = cli("import", str(path), "--json", env=env)
    assert json.loads(result.stdout)["imported"] == [cid], result.stdout
    stored = show(env, cid)
    assert (stored["status"], stored["environment"], stored["product"]) == (
        "active", "test", "CSP")  # blank cells kept what was registered


def test_a_row_for_another_tenant_than_registered_is_refused(devstack, env, tmp_path):
    cid = unique("imp-tenant")
    assert cli("credentials", "add", "--id", cid, "--environment", "test", "--product", "CSP",
               "--marketplace", "US", "--tenant-id", "fabrikam.example", env=env).returncode == 0
    path = write_csv(tmp_path / "t.csv", [row(cid, mint_refresh_token(devstack.env))])
    (failure,) = json.loads(cli("import", str(path), "--json", env=env).stdout)["failed"]
    assert f"broker credentials edit {cid}" in failure["reason"]
    assert show(env, cid)["status"] == "pending-consent"


def test_a_malformed_file_exits_2_with_its_line_and_writes_nothing(devstack, env, tmp_path):
    cid = unique("imp-malformed")
    path = tmp_path / "t.csv"
    path.write_text(f"id,refresh_token\n{cid},{mint_refresh_token(devstack.env)}\nbroken\n")
    result = cli("import", str(path), env=env)
    assert result.returncode == 2
    assert "line 3: 1 cells, but the header has 2" in result.stderr
    assert "nothing was written" in result.stderr
    assert show(env, cid) is None


def test_the_report_object_holds_ids_and_reasons_only(devstack, tmp_path):
    token = mint_refresh_token(devstack.env)
    cid = unique("imp-api")
    path = write_csv(tmp_path / "t.csv", [row(cid, token), row(unique("imp-api-dead"),
                                                               DEAD_TOKEN)])
    broker = Broker(load_settings({**devstack.env, "BROKER_STATE_DIR": str(tmp_path)},
                                  dotenv=False))
    report = broker.import_file(path)
    assert report.imported == [cid] and len(report.failed) == 1 and not report.ok
    assert token not in repr(report) and DEAD_TOKEN not in repr(report)
