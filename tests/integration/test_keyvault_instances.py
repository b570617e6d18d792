"""Vault behaviour that needs a devstack of its own: restarts, a crash, and the service limits."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.core.exceptions import AzureError, HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient, SecretProperties

from devstack import seed
from devstack.keyvault.limits import CREATE_LIMIT
from tests.support.devstack import RunningDevstack, environment, running_devstack

pytestmark = pytest.mark.slow

COMPARED = ("name", "version", "enabled", "tags", "content_type", "not_before", "expires_on",
            "created_on", "updated_on", "recovery_level")


@contextlib.contextmanager
def client_for(stack: RunningDevstack, **options) -> Iterator[SecretClient]:
    """A client of `stack`; call it inside `environment(stack.env)`. The client and its
    credential are closed at the end: devstack keeps connections open, and one left to the
    garbage collector after its devstack stopped is an unclosed-socket warning in some later
    test."""
    with DefaultAzureCredential() as credential, SecretClient(
            stack.vault_url, credential, verify_challenge_resource=False, **options) as client:
        yield client


def described(properties: SecretProperties) -> tuple:
    return tuple(getattr(properties, field) for field in COMPARED)


def snapshot(client: SecretClient) -> dict:
    secrets = {}
    for item in client.list_properties_of_secrets():
        versions = client.list_properties_of_secret_versions(item.name)
        secrets[item.name] = sorted(described(v) for v in versions)
    deleted = {d.name: (described(d.properties), d.deleted_date, d.scheduled_purge_date)
               for d in client.list_deleted_secrets()}
    return {"secrets": secrets, "deleted": deleted}


@pytest.fixture
def session_backup(devstack) -> tuple[str, bytes]:
    """A secret of the session devstack and its backup blob."""
    name = f"portable-{uuid.uuid4().hex[:10]}"
    with DefaultAzureCredential() as credential, SecretClient(
            devstack.vault_url, credential, verify_challenge_resource=False) as client:
        client.set_secret(name, "travels", tags={"from": "session"})
        return name, client.backup_secret(name)


def test_state_survives_restart_and_crash(tmp_path, session_backup):
    state = tmp_path / "vault-state"
    portable, blob = session_backup

    with running_devstack(state) as stack, environment(stack.env), client_for(stack) as client:
        # a backup from another devstack restores into this fresh one
        assert client.restore_secret_backup(blob).name == portable
        first = client.set_secret("rt-contoso", "token-1", tags={"status": "active"},
                                  content_type="application/vnd.partner-refresh-token")
        client.set_secret("rt-contoso", "token-2", enabled=False)
        client.update_secret_properties("rt-contoso", first.properties.version,
                                        tags={"status": "rotated"})
        client.set_secret("rt-gone", "bye")
        client.begin_delete_secret("rt-gone").wait()
        before = snapshot(client)

    with running_devstack(state) as stack, environment(stack.env), client_for(
        stack, retry_total=0
    ) as client:
        assert snapshot(client) == before
        assert client.get_secret(portable).value == "travels"
        assert client.get_secret("rt-contoso", first.properties.version).value == "token-1"
        with pytest.raises(HttpResponseError) as info:
            client.get_secret("rt-contoso")
        assert info.value.status_code == 403

        # kill -9 while a writer is busy: every write it saw acknowledged must be there after
        acknowledged: list[tuple[str, str]] = []
        enough = threading.Event()

        def write() -> None:
            for i in range(10_000):
                try:
                    secret = client.set_secret("crash-test", f"value-{i}")
                except AzureError:  # the devstack is being killed under it
                    return
                acknowledged.append((secret.properties.version, secret.value))
                if len(acknowledged) >= 20:
                    enough.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert enough.wait(30)
        stack.process.kill()
        writer.join(30)

    with running_devstack(state) as stack, environment(stack.env), client_for(stack) as client:
        for version, value in acknowledged:
            assert client.get_secret("crash-test", version).value == value
        assert snapshot(client)["secrets"]["rt-contoso"] == before["secrets"]["rt-contoso"]
        with sqlite3.connect(state / "vault.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_service_limits_throttle_creates_and_the_sdk_waits(tmp_path):
    with running_devstack(tmp_path / "throttled", "--vault-throttle") as stack, \
            environment(stack.env), client_for(stack) as client:
        vault = stack.vault_url.rstrip("/")
        with DefaultAzureCredential() as credential:
            token = credential.get_token(f"{seed.VAULT_RESOURCE}/.default").token
        local = threading.local()
        sessions: list[requests.Session] = []  # one per thread, closed at the end

        def create(i: int) -> requests.Response:
            if not hasattr(local, "session"):
                local.session = requests.Session()
                local.session.headers["Authorization"] = f"Bearer {token}"
                sessions.append(local.session)
            return local.session.put(f"{vault}/secrets/bulk-{i}", params={"api-version": "7.6"},
                                     json={"value": str(i)}, verify=stack.ca_bundle, timeout=10)

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = [r.status_code for r in pool.map(create, range(CREATE_LIMIT))]
        assert statuses == [200] * CREATE_LIMIT
        assert time.monotonic() - started < 10, "too slow to fill the 10 s window"

        refused = create(CREATE_LIMIT)
        assert refused.status_code == 429
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 10
        assert refused.json() == {"error": {
            "code": "Throttled",
            "message": "Request was not processed because too many requests were received. "
                       "Reason: VaultRequestTypeLimitReached",
        }}
        # reads are a separate budget and still served
        assert client.get_secret("bulk-7").value == "7"

        waited = time.monotonic()
        assert client.set_secret("after-the-limit", "eventually").value == "eventually"
        assert time.monotonic() - waited >= retry_after - 1  # the SDK honoured Retry-After

        stats = requests.get(f"{vault}/_devstack/stats", verify=stack.ca_bundle,
                             timeout=10).json()
        for session in sessions:
            session.close()
        assert stats["throttled"] >= 2  # ours, and the SDK's first attempt
        assert stats["creates"] == CREATE_LIMIT + 1
