"""Operator sessions cannot be forged with what a consumer can read, nor replayed after sign-out.

The site runs as devstack's consent-site identity in `entra` mode, with no BROKER_SECRET_KEY
and no BROKER_OPERATOR_CLIENT_SECRET in its settings: it reads both from the config vault, as
the loader does whenever BROKER_CONFIG_VAULT_URL is set. A consumer given a credential can read
that credential's secrets and nothing else; a cookie signed with any of them is refused, while
the same cookie signed with the real key (read here as the operator) is accepted, which proves
the forgery is built right. Sign-out is recorded in the storage account (Azurite), so a copy of
the cookie is refused by this instance and by any other.
"""

from __future__ import annotations

import secrets
import time

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from broker.errors import SettingsError
from broker.locks import CONTAINER
from broker.service import Broker
from broker.settings import load_settings
from consent_web import create_app
from devstack import seed
from tests.support.broker import PUBLIC_URL, RecordingNotifier, consented_credential, unique_id
from tests.support.devstack import environment

SITE, CONSUMER_A = seed.SITE_IDENTITY, seed.CONSUMER_A_IDENTITY


def site_settings(devstack, tmp_path, **extra):
    env = {**devstack.env, "BROKER_STATE_DIR": str(tmp_path / "site-state"),
           "BROKER_PUBLIC_URL": PUBLIC_URL, "BROKER_OPERATOR_AUTH": "entra",
           "BROKER_OPERATOR_TENANT_ID": seed.CPV_TENANT_ID,
           "BROKER_OPERATOR_CLIENT_ID": seed.OPERATOR_APP_ID,
           "BROKER_OPERATOR_GROUP_ID": seed.OPERATOR_GROUP_ID, **extra}
    for name in ("BROKER_SECRET_KEY", "BROKER_OPERATOR_CLIENT_SECRET", "AzureWebJobsStorage"):
        env.pop(name, None)
    env.update(extra)
    with environment({"AZURE_CLIENT_ID": SITE.client_id}):  # the site's own identity
        return load_settings(env, dotenv=False)


def site(settings):
    app = create_app({"BROKER": Broker(settings, notifier=RecordingNotifier()),
                      "TESTING": True})
    return app, app.test_client()


def forged(app, key: str, via: str = "entra") -> str:
    """A session cookie saying 'an operator signed in just now', signed with `key` the way
    Flask signs the site's sessions."""
    keyed = Flask(app.import_name)
    keyed.secret_key = key
    signer = SecureCookieSessionInterface().get_signing_serializer(keyed)
    return signer.dumps({"operator": {"name": "mallory@evil.example", "via": via,
                                      "at": int(time.time()), "sid": secrets.token_urlsafe(18)}})


@pytest.fixture(scope="module")
def readable_by_consumer_a(devstack, tmp_path_factory) -> list[str]:
    """Every secret value consumer A may read: its own-app credential's token and secret."""
    broker = Broker(load_settings({**devstack.env, "BROKER_STATE_DIR": str(
        tmp_path_factory.mktemp("sessions-broker"))}, dotenv=False), notifier=RecordingNotifier())
    own = consented_credential(broker, own_app=True, credential_id=unique_id("forge")).id
    names = (f"rt-{own}", f"cs-{own}")
    for name in names:
        devstack.grant(CONSUMER_A.object_id, "Key Vault Secrets User", devstack.scope(name))
    with SecretClient(devstack.vault_url, ManagedIdentityCredential(
            client_id=CONSUMER_A.client_id), verify_challenge_resource=False) as vault:
        values = [vault.get_secret(name).value for name in names]
    yield values
    for name in names:
        devstack.ungrant(CONSUMER_A.object_id, "Key Vault Secrets User", devstack.scope(name))


def test_the_site_reads_its_signing_key_and_operator_secret_from_the_config_vault(devstack,
                                                                                  tmp_path):
    settings = site_settings(devstack, tmp_path)
    with SecretClient(devstack.config_vault_url, DefaultAzureCredential(),
                      verify_challenge_resource=False) as config:
        assert settings.secret_key == config.get_secret(seed.SIGNING_KEY_SECRET).value
        assert settings.operator_client_secret == \
            config.get_secret(seed.OPERATOR_SECRET_NAME).value
    assert not (tmp_path / "site-state" / "secret-key").exists()  # no local key was made


def test_a_consumer_identity_cannot_even_load_the_sites_settings(devstack, tmp_path):
    env = {**devstack.env, "BROKER_STATE_DIR": str(tmp_path / "consumer-state")}
    env.pop("BROKER_SECRET_KEY", None)
    with environment({"AZURE_CLIENT_ID": CONSUMER_A.client_id}), \
            pytest.raises(SettingsError) as refused:
        load_settings(env, dotenv=False)
    assert refused.value.setting == "BROKER_SECRET_KEY"
    assert "may not read broker-secret-key" in str(refused.value)
    assert "Key Vault Secrets User" in refused.value.hint


def test_a_cookie_forged_with_anything_a_consumer_can_read_is_refused(devstack, tmp_path,
                                                                      readable_by_consumer_a):
    settings = site_settings(devstack, tmp_path)
    app, client = site(settings)
    # the control: the real key makes a cookie the site takes, so the forgery is well made
    client.set_cookie("broker", forged(app, settings.secret_key))
    assert client.get("/").status_code == 200

    candidates = [*readable_by_consumer_a, devstack.env["BROKER_CPV_CLIENT_SECRET"],
                  devstack.env["IDENTITY_HEADER"]]
    for value in candidates:
        _, fresh = site(settings)
        fresh.set_cookie("broker", forged(app, value))
        response = fresh.get("/")
        assert response.status_code == 302, "a forged cookie was accepted"
        assert response.headers["Location"].startswith("/auth/login")


def test_a_session_replayed_after_sign_out_is_refused_by_every_instance(devstack, tmp_path,
                                                                        azurite):
    settings = site_settings(devstack, tmp_path, AzureWebJobsStorage=azurite)
    assert settings.uses_blob_leases
    app, client = site(settings)
    client.set_cookie("broker", forged(app, settings.secret_key))  # signed in, as after MSAL
    page = client.get("/")
    assert page.status_code == 200
    token = page.text.split('name="csrf_token"')[1].split('value="')[1].split('"')[0]
    stolen = client.get_cookie("broker").value

    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 200
    assert client.get("/").status_code == 302
    _, other_instance = site(settings)
    for replaying in (client, other_instance):
        replaying.set_cookie("broker", stolen)
        assert replaying.get("/").status_code == 302

    # the record: a digest of the session id in the apps' storage account, nothing else
    service = BlobServiceClient.from_connection_string(azurite)
    names = [b.name for b in service.get_container_client(CONTAINER)
             .list_blobs(name_starts_with="revoked-sessions/")]
    assert names and all(len(n.removeprefix("revoked-sessions/")) == 64 for n in names)
