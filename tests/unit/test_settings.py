from __future__ import annotations

import threading
from dataclasses import fields
from pathlib import Path

import pytest

import broker.settings as settings_module
from broker.errors import SettingsError
from broker.settings import Settings, load_settings, read_settings
from consent_web.site import check_operator_settings

VAULT = "https://contoso-broker.vault.azure.net"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"BROKER_VAULT_URL": VAULT, "BROKER_STATE_DIR": str(tmp_path / "state")}


def test_defaults_follow_the_contract(env):
    s = load_settings(env, dotenv=False)
    assert s.vault_url == VAULT
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.partner_center_url == "https://api.partnercenter.microsoft.com"
    assert (s.rotate_after_days, s.token_lifetime_days, s.warn_days) == (10, 90, 30)
    assert s.rotate_schedule == "0 0 1 * * *"
    assert s.lease_seconds == 60
    assert s.operator_auth == "local"
    assert s.vault_creates_per_10s == 270
    assert not s.uses_blob_leases


DEFAULTS = {  # the contract (ARCHITECTURE.md, README "Settings"), written out on purpose
    "config_vault_url": None, "authority_host": "https://login.microsoftonline.com",
    "cpv_client_id": "",
    "cpv_client_secret": "", "public_url": "http://localhost:47400",
    "partner_center_url": "https://api.partnercenter.microsoft.com", "rotate_after_days": 10,
    "token_lifetime_days": 90, "rotate_schedule": "0 0 1 * * *",
    "validate_schedule": "0 30 5 * * *", "rotate_window_hours": 4.0, "rotate_concurrency": 8,
    "vault_creates_per_10s": 270, "warn_days": 30, "storage": None, "storage_account": None,
    "storage_blob_url": None, "storage_queue_url": None, "notify_webhook_url": None,
    "smtp_url": None, "notify_email": None, "invite_ttl_hours": 24.0, "lease_seconds": 60,
    "operator_auth": "local", "operator_tenant_id": None, "operator_client_id": None,
    "operator_client_secret": None, "operator_group_id": None, "operator_role": None,
    "display_name": "Partner Token Broker",
}


def test_an_empty_environment_loads_every_default_of_the_contract(tmp_path, monkeypatch):
    """What is loaded is what is declared: a default changed to hour 25, or to anything else,
    fails here (before, the dataclass held one copy and the loader another)."""
    monkeypatch.setattr(settings_module, "default_state_dir", lambda: tmp_path / "state")
    loaded = load_settings({"BROKER_VAULT_URL": VAULT}, dotenv=False)
    values = {f.name: getattr(loaded, f.name) for f in fields(Settings)}
    assert values.pop("vault_url") == VAULT
    assert values.pop("state_dir") == tmp_path / "state"
    assert len(values.pop("secret_key")) >= 32  # generated once for local use
    assert values == DEFAULTS
    declared = {f.name: f.default for f in fields(Settings) if f.name in DEFAULTS}
    assert declared == DEFAULTS


def test_the_consumers_few_settings_come_from_the_same_declarations(tmp_path):
    assert read_settings(["authority_host", "cpv_client_id"], {}, dotenv=False) == {
        "authority_host": DEFAULTS["authority_host"], "cpv_client_id": ""}
    with pytest.raises(SettingsError) as err:
        read_settings(["authority_host"], {"BROKER_AUTHORITY_HOST": "login.example"},
                      dotenv=False)
    assert err.value.setting == "BROKER_AUTHORITY_HOST"


def test_missing_vault_url_names_the_setting(env):
    del env["BROKER_VAULT_URL"]
    with pytest.raises(SettingsError) as err:
        load_settings(env, dotenv=False)
    assert err.value.setting == "BROKER_VAULT_URL"
    assert "BROKER_VAULT_URL" in str(err.value)
    assert err.value.hint


@pytest.mark.parametrize(("name", "value", "message"), [
    ("BROKER_VAULT_URL", "http://vault.example", "must be a URL starting with https://"),
    ("BROKER_VAULT_URL", "not a url", "must be a URL starting with https://"),
    ("BROKER_AUTHORITY_HOST", "login.example", "must be a URL starting with https://"),
    ("BROKER_PUBLIC_URL", "ftp://x", "must be a URL starting with http:// or https://"),
    ("BROKER_ROTATE_AFTER_DAYS", "ten", "must be a whole number"),
    ("BROKER_ROTATE_AFTER_DAYS", "90", "must be less than BROKER_TOKEN_LIFETIME_DAYS"),
    ("BROKER_TOKEN_LIFETIME_DAYS", "0", "must be between 1 and 3650"),
    ("BROKER_LEASE_SECONDS", "90", "must be between 15 and 60"),
    ("BROKER_LEASE_SECONDS", "5", "must be between 15 and 60"),
    ("BROKER_ROTATE_SCHEDULE", "0 1 * * *", "wants six fields"),
    ("BROKER_ROTATE_SCHEDULE", "0 0 25 * * *", "hour 25 is out of range 0-23"),
    ("BROKER_VALIDATE_SCHEDULE", "0 0 1 31 2 *", "never fires"),
    ("BROKER_ROTATE_WINDOW_HOURS", "x", "must be a number"),
    ("BROKER_VAULT_CREATES_PER_10S", "301", "must be between 1 and 300"),
    ("BROKER_SMTP_URL", "https://mail.example", "starting with smtp:// or smtps://"),
    ("BROKER_NOTIFY_EMAIL", "ops@example.com, nobody", "comma-separated email addresses"),
    ("BROKER_CPV_CLIENT_ID", "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c",
     "BROKER_CPV_CLIENT_SECRET is not set"),
    ("BROKER_SECRET_KEY", "short", "at least 32 characters"),
    ("BROKER_DISPLAY_NAME", "x" * 81, "at most 80 printable characters"),
    ("BROKER_DISPLAY_NAME", "Fabrikam\x07", "at most 80 printable characters"),
])
def test_invalid_setting_is_named_with_what_is_wrong(env, name, value, message):
    env[name] = value
    with pytest.raises(SettingsError) as err:
        load_settings(env, dotenv=False)
    assert message in str(err.value)
    assert err.value.setting in str(err.value)


def test_operator_sign_in_settings_are_checked_by_the_site_alone(env):
    """The Functions app and the CLI load the same settings: a site-only mistake must not stop
    them; the site refuses it by name when it starts."""
    env.update({"BROKER_OPERATOR_AUTH": "entra", "BROKER_OPERATOR_TENANT_ID": "contoso.example"})
    settings = load_settings(env, dotenv=False)
    with pytest.raises(SettingsError) as err:
        check_operator_settings(settings)
    assert err.value.setting == "BROKER_OPERATOR_CLIENT_ID"
    env["BROKER_OPERATOR_AUTH"] = "magic"
    with pytest.raises(SettingsError, match="must be local, entra or easyauth"):
        check_operator_settings(load_settings(env, dotenv=False))


def test_easyauth_without_an_operator_group_or_role_is_refused_by_the_site(env):
    env["BROKER_OPERATOR_AUTH"] = "easyauth"
    with pytest.raises(SettingsError) as err:
        check_operator_settings(load_settings(env, dotenv=False))
    assert "BROKER_OPERATOR_GROUP_ID or BROKER_OPERATOR_ROLE" in str(err.value)
    for name in ("BROKER_OPERATOR_GROUP_ID", "BROKER_OPERATOR_ROLE"):
        check_operator_settings(load_settings({**env, name: "ops"}, dotenv=False))


def test_values_are_converted_and_trailing_slashes_dropped(env):
    env.update({
        "BROKER_VAULT_URL": VAULT + "/", "BROKER_ROTATE_AFTER_DAYS": " 7 ",
        "BROKER_ROTATE_WINDOW_HOURS": "2.5", "BROKER_OPERATOR_AUTH": "EasyAuth",
        "BROKER_OPERATOR_ROLE": "Broker.Operator", "BROKER_ROTATE_SCHEDULE": "%ROTATE%",
    })
    s = load_settings(env, dotenv=False)
    assert s.vault_url == VAULT
    assert s.rotate_after_days == 7
    assert s.rotate_window_hours == 2.5
    assert s.operator_auth == "easyauth"
    assert s.rotate_schedule == "%ROTATE%"


@pytest.mark.parametrize("storage", [
    {"AzureWebJobsStorage": "UseDevelopmentStorage=true"},
    {"AzureWebJobsStorage__accountName": "brokerstore"},
    {"AzureWebJobsStorage__blobServiceUri": "https://brokerstore.blob.core.windows.net"},
])
def test_any_form_of_storage_switches_to_blob_leases(env, storage):
    env.update(storage)
    assert load_settings(env, dotenv=False).uses_blob_leases


def test_repr_hides_secrets(env):
    env.update({
        "BROKER_CPV_CLIENT_ID": "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c",
        "BROKER_CPV_CLIENT_SECRET": "cpv-secret-value-1234",
        "BROKER_SECRET_KEY": "k" * 40,
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=storage-key-5678",
        "BROKER_SMTP_URL": "smtps://bot:smtp-password-9@mail.example:465",
        "BROKER_NOTIFY_WEBHOOK_URL": "https://hooks.example/services/webhook-token-0",
        "BROKER_OPERATOR_AUTH": "entra", "BROKER_OPERATOR_TENANT_ID": "contoso.example",
        "BROKER_OPERATOR_CLIENT_ID": "x", "BROKER_OPERATOR_CLIENT_SECRET": "operator-secret-1",
    })
    text = repr(load_settings(env, dotenv=False))
    for secret in ("cpv-secret-value-1234", "k" * 40, "storage-key-5678", "smtp-password-9",
                   "webhook-token-0", "operator-secret-1"):
        assert secret not in text
    assert "8a4f0c21" in text


def test_dotenv_is_read_without_overriding_the_environment(env, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "BROKER_ROTATE_AFTER_DAYS=5\nBROKER_WARN_DAYS=14\nBROKER_VAULT_URL=https://other.example\n"
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings(env)
    assert s.vault_url == VAULT
    assert (s.rotate_after_days, s.warn_days) == (5, 14)
    assert load_settings(env, dotenv=False).warn_days == 30


def test_local_secret_key_is_generated_once_and_shared(env):
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(load_settings(env, dotenv=False)
                                                           .secret_key)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    path = Path(env["BROKER_STATE_DIR"]) / "secret-key"
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in path.parent.iterdir()] == ["secret-key"]


def test_secret_key_is_required_in_azure(env):
    env["WEBSITE_INSTANCE_ID"] = "abc123"
    with pytest.raises(SettingsError) as err:
        load_settings(env, dotenv=False)
    assert err.value.setting == "BROKER_SECRET_KEY"
    assert not (Path(env["BROKER_STATE_DIR"]) / "secret-key").exists()


def test_the_state_dir_does_not_depend_on_the_working_directory(env, tmp_path, monkeypatch):
    from broker.settings import default_state_dir

    env.pop("BROKER_STATE_DIR")
    env["BROKER_SECRET_KEY"] = "k" * 40  # nothing is generated in the checkout
    monkeypatch.chdir(tmp_path)
    here = load_settings(env, dotenv=False).state_dir
    monkeypatch.chdir(Path(__file__).parent)
    assert load_settings(env, dotenv=False).state_dir == here == default_state_dir()
    assert here == Path(__file__).resolve().parents[2] / ".broker"  # this checkout's
    env["BROKER_STATE_DIR"] = "relative/state"
    assert load_settings(env, dotenv=False).state_dir == Path(__file__).parent.absolute() \
        / "relative" / "state"


def test_settings_can_be_built_directly_for_tests():
    s = Settings(vault_url=VAULT)
    assert s.token_lifetime_days == 90 and s.state_dir == settings_module.default_state_dir()


def test_use_development_storage_means_azurite_defaults(env):
    env["AzureWebJobsStorage"] = "UseDevelopmentStorage=true"
    storage = load_settings(env, dotenv=False).storage
    assert "AccountName=devstoreaccount1" in storage
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1" in storage


def test_secret_settings_are_registered_for_redaction(env):
    from broker.logs import redact

    env.update({"BROKER_CPV_CLIENT_ID": "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c",
                "BROKER_CPV_CLIENT_SECRET": "cpv-secret-to-redact-42",
                "AzureWebJobsStorage": "AccountName=a;AccountKey=c3RvcmFnZS1rZXk=;X=y"})
    s = load_settings(env, dotenv=False)
    assert {"cpv-secret-to-redact-42", "c3RvcmFnZS1rZXk=", s.secret_key} <= redact.registered()


@pytest.mark.parametrize("name", ["BROKER_SECRET_KEY", "BROKER_CPV_CLIENT_SECRET"])
def test_an_unresolved_key_vault_reference_is_refused_not_used_as_the_value(name, tmp_path):
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)"
    env = {"BROKER_VAULT_URL": "https://kv.vault.azure.net/", "BROKER_STATE_DIR": str(tmp_path),
           "BROKER_SECRET_KEY": "k" * 40, name: reference}
    with pytest.raises(SettingsError) as caught:
        load_settings(env, dotenv=False)
    assert caught.value.setting == name
    assert "could not resolve" in str(caught.value)
