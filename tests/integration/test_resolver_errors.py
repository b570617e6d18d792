"""Every error a consumer can get from TokenResolver: its type, and a message naming the URL or
the host and the cause, so the consumer knows what to fix or whom to ask.

A host that does not exist or a port nothing listens on fails at once (no retries: retrying
cannot help) and is not a TransientFailure; a host that does not answer in time is.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from broker import TokenResolver
from broker.errors import CredentialNotFound, InvalidInput, NeedsConsent, TransientFailure
from broker.settings import load_settings
from broker.vault import Vault
from devstack import seed
from tests.support.resolver import Counter, register, store

PC_SCOPE = seed.PARTNER_CENTER_DEFAULT_SCOPE


@pytest.fixture(scope="module")
def settings(devstack, tmp_path_factory):
    state = tmp_path_factory.mktemp("resolver-errors-state")
    return load_settings({**os.environ, "BROKER_STATE_DIR": str(state)}, dotenv=False)


@pytest.fixture(scope="module")
def vault(settings) -> Vault:
    return Vault(settings)


@pytest.fixture(scope="module")
def stored(vault):
    credential = register(vault)
    token = f"0.Astored-{uuid.uuid4().hex}"
    store(vault, credential, token)
    return credential, token


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@contextlib.contextmanager
def silent_server():
    """A port that accepts TCP connections and never says a word (TLS never starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_a_missing_version_says_the_version_does_not_exist(vault, stored, settings):
    credential, _ = stored
    missing = "0" * 32
    url = vault.secret_id(credential.id, missing)
    with pytest.raises(InvalidInput) as err:
        TokenResolver(settings=settings).refresh_token(url)
    assert not isinstance(err.value, CredentialNotFound)
    assert url in str(err.value) and "no version" in str(err.value)
    assert "url" in err.value.errors


def test_a_missing_secret_is_credential_not_found_naming_the_url(vault, settings):
    url = vault.secret_id(f"ghost-{uuid.uuid4().hex[:8]}")
    with pytest.raises(CredentialNotFound) as err:
        TokenResolver(settings=settings).refresh_token(url)
    assert url in str(err.value)


def test_an_unknown_host_fails_at_once_naming_the_host(stored):
    credential, _ = stored
    port = urlsplit(credential.secret_id).port
    url = f"https://no-such-vault.vault.localhost.invalid:{port}/secrets/rt-{credential.id}"
    counter = Counter()
    with pytest.raises(InvalidInput) as err:
        TokenResolver(raw_request_hook=counter).refresh_token(url)
    assert not isinstance(err.value, TransientFailure)
    assert "no-such-vault.vault.localhost.invalid" in str(err.value)
    assert "not found" in str(err.value) and url in str(err.value)
    assert counter.gets == 1  # not retried


def test_a_closed_port_fails_at_once_naming_the_host_and_port(stored):
    credential, _ = stored
    host = f"localhost:{closed_port()}"
    url = f"https://{host}/secrets/rt-{credential.id}"
    counter = Counter()
    with pytest.raises(InvalidInput) as err:
        TokenResolver(raw_request_hook=counter).refresh_token(url)
    assert host in str(err.value) and "refused" in str(err.value)
    assert counter.gets == 1


@pytest.mark.timeout(60)  # azure-core's default timeouts are 300 s: a regression must not hang
def test_a_host_that_does_not_answer_is_a_transient_failure_naming_it(stored):
    credential, _ = stored
    with silent_server() as port:
        url = f"https://localhost:{port}/secrets/rt-{credential.id}"
        resolver = TokenResolver(connection_timeout=0.3, read_timeout=0.3, retry_total=0)
        with pytest.raises(TransientFailure) as err:
            resolver.refresh_token(url)
    assert f"localhost:{port}" in str(err.value) and "did not answer" in str(err.value)


def test_secret_names_are_case_insensitive_as_in_key_vault(vault, stored, settings):
    credential, token = stored
    url = credential.secret_id.replace("/secrets/rt-", "/secrets/RT-")
    assert TokenResolver(settings=settings).refresh_token(url) == token


def test_an_upper_case_url_makes_access_tokens_too(settings, devstack, tmp_path):
    from tests.support.broker import consented_credential, make_broker

    credential = consented_credential(make_broker(devstack, tmp_path), own_app=True)
    url = credential.secret_id.replace("/secrets/rt-", "/secrets/Rt-")
    assert TokenResolver(settings=settings).access_token(url, PC_SCOPE)


def test_a_placeholder_is_needs_consent_naming_the_url(vault, settings):
    pending = register(vault)
    with pytest.raises(NeedsConsent) as err:
        TokenResolver(settings=settings).refresh_token(pending.secret_id)
    assert pending.secret_id in str(err.value)


def test_no_identity_is_access_denied_naming_the_url_and_the_role(stored, monkeypatch):
    from azure.identity import EnvironmentCredential

    from broker.errors import AccessDenied

    credential, _ = stored
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AccessDenied) as err:
        TokenResolver(EnvironmentCredential()).refresh_token(credential.secret_id)
    assert credential.secret_id in str(err.value)
    assert err.value.role == "Key Vault Secrets User"
    assert f"rt-{credential.id}" in err.value.scope


def test_no_role_is_access_denied_naming_the_url_the_role_and_the_secret(stored):
    from azure.identity import ManagedIdentityCredential

    from broker.errors import AccessDenied

    credential, _ = stored
    no_role = ManagedIdentityCredential(client_id=seed.CONSUMER_B_IDENTITY.client_id)
    with pytest.raises(AccessDenied) as err:
        TokenResolver(no_role).refresh_token(credential.secret_id)
    assert credential.secret_id in str(err.value)
    assert err.value.role == "Key Vault Secrets User"
    assert err.value.scope.endswith(f"/secrets/rt-{credential.id}")
    assert err.value.scope in err.value.hint
