"""TokenResolver against devstack: Key Vault for refresh tokens, Entra for access tokens."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from broker import TokenResolver
from broker.credentials import Credential
from broker.errors import (
    AppMisconfigured,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.settings import load_settings
from broker.vault import Vault
from devstack import seed
from tests.support.browserless import consent_with_msal
from tests.support.resolver import Counter, register, store

PC_SCOPE = seed.PARTNER_CENTER_DEFAULT_SCOPE


def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


@pytest.fixture(scope="module")
def settings(devstack, tmp_path_factory):
    state = tmp_path_factory.mktemp("resolver-state")
    return load_settings({**os.environ, "BROKER_STATE_DIR": str(state)}, dotenv=False)


@pytest.fixture(scope="module")
def vault(settings) -> Vault:
    return Vault(settings)


def consented_refresh_token(settings, client_id: str, secret: str) -> str:
    """A real consent: MSAL's auth-code flow, the sign-in pages completed without a browser."""
    return consent_with_msal(settings.authority_host, client_id, secret)["refresh_token"]


@pytest.fixture(scope="module")
def cpv_credential(settings, vault) -> Credential:
    credential = register(vault)
    token = consented_refresh_token(settings, settings.cpv_client_id, settings.cpv_client_secret)
    store(vault, credential, token)
    return credential


def test_unversioned_url_is_the_latest_and_refreshed_after_the_interval(vault, settings):
    credential = register(vault)
    first, second = f"0.Afirst-{uuid.uuid4().hex}", f"0.Asecond-{uuid.uuid4().hex}"
    store(vault, credential, first)
    resolver = TokenResolver(settings=settings, refresh_interval=1.0)
    assert resolver.refresh_token(credential.secret_id) == first
    store(vault, credential, second)
    assert resolver.refresh_token(credential.secret_id) == first  # cached
    time.sleep(1.3)  # past the interval and the quarter-interval it may be served stale
    assert resolver.refresh_token(credential.secret_id) == second


def test_versioned_url_is_that_version(vault, settings):
    credential = register(vault)
    old = store(vault, credential, f"0.Aold-{uuid.uuid4().hex}")
    store(vault, credential, f"0.Anew-{uuid.uuid4().hex}")
    resolver = TokenResolver(settings=settings)
    assert resolver.refresh_token(vault.secret_id(credential.id, old)).startswith("0.Aold-")


@pytest.mark.parametrize("url", [
    "not a url", "https://vault.example/keys/rt-x", "http://localhost/secrets/rt-x",
    "https://localhost/secrets/cs-x", "https://localhost/secrets/other", "",
])
def test_invalid_url_is_invalid_input_without_any_call(url):
    counter = Counter()
    resolver = TokenResolver(object(), raw_request_hook=counter)
    with pytest.raises(InvalidInput) as err:
        resolver.refresh_token(url)
    assert "url" in err.value.errors and counter.gets == 0


def test_placeholder_disabled_and_missing_secrets(vault, settings):
    resolver = TokenResolver(settings=settings)
    pending = register(vault)
    with pytest.raises(NeedsConsent):
        resolver.refresh_token(pending.secret_id)
    with pytest.raises(NeedsConsent):
        resolver.refresh_token(vault.secret_id(pending.id, pending.latest.version))
    with pytest.raises(CredentialNotFound):
        resolver.refresh_token(vault.secret_id(f"ghost-{uuid.uuid4().hex[:8]}"))


def test_one_fetch_in_flight_per_secret(vault, settings):
    credential = register(vault)
    token = f"0.Aflight-{uuid.uuid4().hex}"
    store(vault, credential, token)
    warm = register(vault)
    store(vault, warm, f"0.Awarm-{uuid.uuid4().hex}")
    counter = Counter()
    resolver = TokenResolver(settings=settings, raw_request_hook=counter)
    resolver.refresh_token(warm.secret_id)  # past Key Vault's authentication challenge
    counter.gets, counter.delay = 0, 0.2
    barrier, results = threading.Barrier(16), []

    def resolve():
        barrier.wait()
        results.append(resolver.refresh_token(credential.secret_id))

    threads = [threading.Thread(target=resolve) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [token] * 16
    assert counter.gets == 1


def test_hot_path_never_waits_for_a_refresh(vault, settings):
    credential = register(vault)
    store(vault, credential, f"0.Ahot-{uuid.uuid4().hex}")
    counter = Counter()
    # fresh for 2 s, then usable for 0.5 s more while a 0.3 s fetch runs in the background
    resolver = TokenResolver(settings=settings, refresh_interval=2.0, raw_request_hook=counter)
    resolver.refresh_token(credential.secret_id)
    counter.delay, gets, slowest = 0.3, counter.gets, 0.0
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        start = time.perf_counter()
        resolver.refresh_token(credential.secret_id)
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.001)
    assert counter.gets > gets  # refreshed in the background
    assert slowest < 0.25  # a caller that waited for a fetch would have taken 0.3 s


def test_a_hot_secret_costs_at_most_one_vault_read_per_refresh_interval(vault, settings):
    credential = register(vault)
    store(vault, credential, f"0.Ahot-{uuid.uuid4().hex}")
    counter = Counter()
    resolver = TokenResolver(settings=settings, refresh_interval=0.5, raw_request_hook=counter)
    resolver.refresh_token(credential.secret_id)
    gets, start = counter.gets, time.monotonic()
    while time.monotonic() - start < 2.2:
        resolver.refresh_token(credential.secret_id)
    time.sleep(0.1)  # let a background refresh that just started land in the count
    elapsed = time.monotonic() - start
    assert 1 <= counter.gets - gets <= elapsed / 0.5


def test_transient_failure_serves_the_cached_token_until_it_is_too_old(vault, settings):
    credential = register(vault)
    token = f"0.Atransient-{uuid.uuid4().hex}"
    store(vault, credential, token)
    counter = Counter()
    resolver = TokenResolver(settings=settings, refresh_interval=1.0, raw_request_hook=counter,
                             retry_total=0)
    assert resolver.refresh_token(credential.secret_id) == token
    counter.fail = True
    time.sleep(1.1)  # past fresh (1 s), still usable: served while the refresh fails behind
    assert resolver.refresh_token(credential.secret_id) == token
    time.sleep(0.4)  # past usable (1.25 s)
    with pytest.raises(TransientFailure):
        resolver.refresh_token(credential.secret_id)
    counter.fail = False
    assert resolver.refresh_token(credential.secret_id) == token


def test_cpv_access_token_is_made_and_cached_without_writing_the_vault(vault, settings,
                                                                       cpv_credential):
    versions = len(vault.versions(cpv_credential.id))
    resolver = TokenResolver(settings=settings)
    access = resolver.access_token(cpv_credential.secret_id, PC_SCOPE)
    body = claims(access)
    assert body["aud"] == seed.PARTNER_CENTER_RESOURCE
    assert body["tid"] == seed.PARTNER_TENANT_ID and "mfa" in body["amr"]
    assert body["appid"] == seed.CPV_APP_ID
    assert resolver.access_token(cpv_credential.secret_id, PC_SCOPE) is access
    assert len(vault.versions(cpv_credential.id)) == versions


def test_own_app_access_token_uses_the_stored_client_secret(vault, settings):
    credential = register(vault, seed.PARTNER_APP_ID)
    vault.write_client_secret(credential.id, seed.PARTNER_APP_SECRET,
                              datetime.fromisoformat(seed.PARTNER_APP_SECRET_EXPIRES))
    token = consented_refresh_token(settings, seed.PARTNER_APP_ID, seed.PARTNER_APP_SECRET)
    store(vault, credential, token)
    resolver = TokenResolver(settings=settings)
    access = resolver.access_token(credential.secret_id, PC_SCOPE)
    assert claims(access)["appid"] == seed.PARTNER_APP_ID


def test_access_token_from_env_settings_when_none_are_given(cpv_credential, monkeypatch,
                                                            tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here; the devstack env is in os.environ
    access = TokenResolver().access_token(cpv_credential.secret_id, PC_SCOPE)
    assert claims(access)["aud"] == seed.PARTNER_CENTER_RESOURCE
    assert not (tmp_path / ".broker").exists()


def test_dead_grant_is_needs_consent(vault, settings):
    credential = register(vault)
    store(vault, credential, f"0.Adead-{uuid.uuid4().hex}")
    with pytest.raises(NeedsConsent):
        TokenResolver(settings=settings).access_token(credential.secret_id, PC_SCOPE)


def test_wrong_app_secret_is_app_misconfigured(settings, cpv_credential):
    from dataclasses import replace

    wrong = replace(settings, cpv_client_secret="not-the-cpv-secret-0000")
    with pytest.raises(AppMisconfigured) as err:
        TokenResolver(settings=wrong).access_token(cpv_credential.secret_id, PC_SCOPE)
    assert "not-the-cpv-secret-0000" not in str(err.value)


@pytest.mark.parametrize("scope", ["", "a b"])
def test_scope_must_be_one_scope(cpv_credential, settings, scope):
    with pytest.raises(InvalidInput):
        TokenResolver(settings=settings).access_token(cpv_credential.secret_id, scope)


def test_one_secret_client_per_vault(settings, cpv_credential):
    resolver = TokenResolver(settings=settings)
    resolver.refresh_token(cpv_credential.secret_id)
    resolver.refresh_token(cpv_credential.secret_id.rstrip("/") + "/")
    host = urlsplit(cpv_credential.secret_id).netloc
    assert [urlsplit(u).netloc for u in resolver._clients] == [host]
    resolver.close()
