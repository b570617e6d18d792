"""Key Vault's expiry events for the broker's own secrets and the partner apps' secrets, end to
end: the operator writes the secret to devstack's config vault (or the token vault) through the
SDK, the event Key Vault would raise for its current version is built in the Event Grid schema
from the secret's own properties, decoded by the Functions SDK's converter and handed to the
indexed function `secret_near_expiry`, which runs as the rotation app's identity (its roles
only, as in Azure), and the notification arrives at a local webhook. A private devstack keeps
the rewritten CPV and operator secrets away from every other test. (Refresh tokens' events are
in test_functions.py.)"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient, SecretProperties

import function_app
from broker.config_vault import CPV_CLIENT_SECRET, OPERATOR_CLIENT_SECRET
from broker.credentials import CredentialSpec
from devstack import seed
from tests.support.devstack import environment, running_devstack
from tests.support.notify import Webhook, running_webhook

NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with running_webhook() as hook:
        yield hook


@pytest.fixture(scope="module")
def secret_near_expiry():
    module = importlib.reload(function_app)  # one indexing per app, as the worker does
    (function,) = [f for f in module.app.get_functions()
                   if f.get_function_name() == "secret_near_expiry"]
    return function.get_user_function()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_devstack(tmp_path_factory.mktemp("expiry-devstack")) as running, \
            environment(running.env):
        yield running


@pytest.fixture
def app_settings(stack, webhook, tmp_path, monkeypatch) -> None:
    """The function app's settings as the host provides them, with alerts to the webhook, and
    its identity: the rotation app's (AZURE_CLIENT_ID, as infra/ sets it)."""
    monkeypatch.setenv("AZURE_CLIENT_ID", stack.env["DEVSTACK_ROTATION_CLIENT_ID"])
    monkeypatch.setenv("BROKER_NOTIFY_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("BROKER_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER_OPERATOR_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(function_app, "_broker", None)  # a fresh worker process
    monkeypatch.setattr(function_app, "_queues", None)


def config_vault_url() -> str:
    return os.environ["BROKER_CONFIG_VAULT_URL"]


def client(vault_url: str) -> SecretClient:
    """The operator's client (devstack's system-assigned identity), as `az keyvault secret set`
    writes; a local vault answers its challenge with the public resource, hence no check."""
    return SecretClient(vault_url, ManagedIdentityCredential(), verify_challenge_resource=False)


def store(vault_url: str, name: str, value: str, expires_in_days: float) -> SecretProperties:
    expires = datetime.now(UTC) + timedelta(days=expires_in_days)
    return client(vault_url).set_secret(name, value, expires_on=expires).properties


def key_vault_event(event_type: str, secret: SecretProperties) -> func.EventGridEvent:
    """What Event Grid delivers for Key Vault's event about this secret version."""
    ident = KeyVaultSecretIdentifier(secret.id)
    vault_name = ident.vault_url.split("//", 1)[1].split(".", 1)[0]
    body = {
        "id": str(uuid.uuid4()),
        "topic": f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg-broker/providers/"
                 f"Microsoft.KeyVault/vaults/{vault_name}",
        "subject": ident.name,
        "eventType": event_type,
        "eventTime": datetime.now(UTC).isoformat(),
        "dataVersion": "1",
        "metadataVersion": "1",
        "data": {
            "Id": secret.id,
            "VaultName": vault_name,
            "ObjectType": "Secret",
            "ObjectName": ident.name,
            "Version": ident.version,
            "NBF": int(secret.not_before.timestamp()) if secret.not_before else None,
            "EXP": int(secret.expires_on.timestamp()),
        },
    }
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(body), "json"),
                                            trigger_metadata={})


@pytest.mark.parametrize("event_type", [NEAR_EXPIRY, EXPIRED])
def test_the_cpv_secret_running_out_tells_the_operator_how_to_renew_it(
        app_settings, secret_near_expiry, webhook, event_type):
    value = f"cpv-secret-{uuid.uuid4().hex}"
    days = 20 if event_type == NEAR_EXPIRY else -1
    secret = store(config_vault_url(), CPV_CLIENT_SECRET, value, days)
    secret_near_expiry(key_vault_event(event_type, secret))
    (alert,) = webhook.events
    assert alert["kind"] == "broker-secret-expiring"
    assert alert["credential_id"] == "cpv-client-secret"
    assert f"{secret.expires_on:%Y-%m-%d}" in alert["message"]
    assert ("expires on" if event_type == NEAR_EXPIRY else "expired on") in alert["message"]
    assert "every credential" in alert["message"]
    vault_name = KeyVaultSecretIdentifier(secret.id).vault_url.split("//", 1)[1].split(".")[0]
    assert f"--vault-name {vault_name} --name cpv-client-secret" in alert["action"]
    assert f"--id {seed.CPV_APP_ID}" in alert["action"]  # the CPV app's client id, from settings
    assert value not in json.dumps(webhook.events)


def test_the_operator_secret_running_out_names_the_operator_app(
        app_settings, secret_near_expiry, webhook):
    secret = store(config_vault_url(), OPERATOR_CLIENT_SECRET, uuid.uuid4().hex, 10)
    secret_near_expiry(key_vault_event(NEAR_EXPIRY, secret))
    (alert,) = webhook.events
    assert alert["kind"] == "broker-secret-expiring"
    assert alert["credential_id"] == "operator-client-secret"
    assert "operators can no longer sign in" in alert["message"]
    assert "--id 11111111-2222-3333-4444-555555555555" in alert["action"]


def test_a_partner_apps_client_secret_running_out_asks_for_a_new_one(
        app_settings, secret_near_expiry, webhook):
    credential_id = f"exp-{uuid.uuid4().hex[:10]}"
    broker = function_app._get_broker()
    broker.add_credential(CredentialSpec(
        id=credential_id, environment="test", product="csp", marketplace="US",
        tenant_id=seed.PARTNER_TENANT_ID, client_id=str(uuid.uuid4()),
        client_secret=f"partner-secret-{uuid.uuid4().hex}",
        secret_expires_on=date.today() + timedelta(days=25)))
    secret = client(os.environ["BROKER_VAULT_URL"]).get_secret(f"cs-{credential_id}").properties
    secret_near_expiry(key_vault_event(NEAR_EXPIRY, secret))
    (alert,) = webhook.events
    assert alert["kind"] == "secret-expiring" and alert["credential_id"] == credential_id
    assert f"broker credentials edit {credential_id}" in alert["action"]


def test_an_event_about_another_secret_sends_nothing(app_settings, secret_near_expiry, webhook):
    secret = store(config_vault_url(), "notify-webhook-url", "https://example.invalid/x", 5)
    assert secret_near_expiry(key_vault_event(NEAR_EXPIRY, secret)) is None
    assert webhook.events == []
    assert function_app._broker is None  # not even the broker was started
