"""The unmodified sync `SecretClient`, through `DefaultAzureCredential`, against devstack's vault.

Every test uses its own secret names: the session devstack is shared with other test modules.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def client(devstack) -> SecretClient:
    with SecretClient(devstack.vault_url, DefaultAzureCredential(),
                      verify_challenge_resource=False) as secret_client:
        yield secret_client


def stats(devstack) -> dict:
    response = requests.get(devstack.vault_url.rstrip("/") + "/_devstack/stats",
                            verify=devstack.ca_bundle, timeout=10)
    response.raise_for_status()
    return response.json()


def test_set_then_get_latest_and_by_version(client, devstack):
    name = unique("rt-contoso")
    obtained = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    first = client.set_secret(
        name, "token-1", content_type="application/vnd.partner-refresh-token",
        tags={"credential": "contoso", "source": "consent"},
        not_before=obtained, expires_on=obtained + dt.timedelta(days=90),
    )
    second = client.set_secret(name, "token-2")

    ident = KeyVaultSecretIdentifier(first.id)
    assert ident.vault_url == devstack.vault_url.rstrip("/")
    assert ident.name == name
    assert len(first.properties.version) == 32
    assert int(first.properties.version, 16) >= 0 and first.properties.version.islower()
    assert first.properties.not_before == obtained
    assert first.properties.expires_on == obtained + dt.timedelta(days=90)
    assert first.properties.recovery_level == "Recoverable+Purgeable"
    assert first.properties.recoverable_days == 90
    assert first.properties.created_on == first.properties.updated_on

    latest = client.get_secret(name)
    assert (latest.value, latest.properties.version) == ("token-2", second.properties.version)
    old = client.get_secret(name, first.properties.version)
    assert old.value == "token-1"
    assert old.properties.content_type == "application/vnd.partner-refresh-token"
    assert old.properties.tags == {"credential": "contoso", "source": "consent"}
    # names are case-insensitive and keep the case they were created with
    assert client.get_secret(name.upper()).name == name


def test_update_properties_of_a_version_and_of_the_latest(client):
    name = unique("cs-fabrikam")
    first = client.set_secret(name, "one", tags={"status": "active"})
    client.set_secret(name, "two")

    updated = client.update_secret_properties(
        name, first.properties.version, tags={"status": "expiring"}, content_type="text/plain",
    )
    assert updated.version == first.properties.version
    assert updated.tags == {"status": "expiring"}
    assert updated.updated_on >= updated.created_on
    # no version: the latest one is updated
    latest = client.update_secret_properties(name, enabled=False)
    assert latest.version != first.properties.version and latest.enabled is False
    assert client.get_secret(name, first.properties.version).value == "one"


def test_disabled_version_is_forbidden_but_listed(client):
    name = unique("pending")
    placeholder = client.set_secret(name, "placeholder", enabled=False,
                                    tags={"status": "pending-consent"})
    with pytest.raises(HttpResponseError) as info:
        client.get_secret(name)
    assert info.value.status_code == 403
    assert info.value.error.code == "Forbidden"
    assert info.value.error.message == "Operation get is not allowed on a disabled secret."
    assert info.value.error.innererror == {"code": "SecretDisabled"}
    [listed] = client.list_properties_of_secret_versions(name)
    assert listed.version == placeholder.properties.version and listed.enabled is False
    client.update_secret_properties(name, placeholder.properties.version, enabled=True)
    assert client.get_secret(name).value == "placeholder"


def test_missing_secret_and_version_are_404(client):
    name = unique("missing")
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_secret(name)
    assert info.value.error.code == "SecretNotFound"
    assert info.value.error.message == (
        f"A secret with (name/id) {name} was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery command. "
        "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
    )
    client.set_secret(name, "now it exists")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name, "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)


def test_list_secrets_pages_past_25(client):
    prefix = unique("page")
    names = {f"{prefix}-{i:02d}" for i in range(60)}
    for name in names:
        client.set_secret(name, "v")
    pages = client.list_properties_of_secrets().by_page()
    sizes, seen = [], set()
    for page in pages:
        items = list(page)
        sizes.append(len(items))
        seen.update(item.name for item in items)
    assert names <= seen
    assert max(sizes) == 25 and len(sizes) >= 3
    small_pages = list(client.list_properties_of_secrets(max_page_size=7).by_page())
    assert max(len(list(page)) for page in small_pages) <= 7
    item = next(i for i in client.list_properties_of_secrets() if i.name in names)
    assert item.id.endswith(f"/secrets/{item.name}")  # list items carry the base id


def test_list_versions_pages_past_25(client):
    name = unique("rotated")
    made = [client.set_secret(name, f"token-{i}").properties.version for i in range(30)]
    listed = list(client.list_properties_of_secret_versions(name))
    assert sorted(v.version for v in listed) == sorted(made)
    assert all(v.name == name for v in listed)
    pages = list(client.list_properties_of_secret_versions(name).by_page())
    assert [len(list(page)) for page in pages] == [25, 5]


def test_soft_delete_life_cycle(client):
    name = unique("lifecycle")
    original = client.set_secret(name, "first", tags={"k": "v"})
    deleted = client.begin_delete_secret(name).result()
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.scheduled_purge_date - deleted.deleted_date == dt.timedelta(days=90)
    assert deleted.properties.version == original.properties.version

    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    with pytest.raises(ResourceExistsError) as info:
        client.set_secret(name, "reuse")
    assert info.value.status_code == 409
    assert info.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}
    assert client.get_deleted_secret(name).properties.tags == {"k": "v"}
    assert name in {d.name for d in client.list_deleted_secrets()}

    poller = client.begin_recover_deleted_secret(name)
    poller.wait()
    assert poller.result().version == original.properties.version
    assert client.get_secret(name).value == "first"

    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    assert client.set_secret(name, "fresh").value == "fresh"
    assert len(list(client.list_properties_of_secret_versions(name))) == 1


def test_purge_and_recover_need_a_deleted_secret(client):
    name = unique("never-deleted")
    client.set_secret(name, "v")
    with pytest.raises(ResourceNotFoundError):
        client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret(name)


def test_backup_and_restore_after_purge(client):
    name = unique("backed-up")
    versions = [client.set_secret(name, f"v{i}", tags={"i": str(i)}) for i in range(3)]
    blob = client.backup_secret(name)
    assert isinstance(blob, bytes) and b"v1" not in blob

    with pytest.raises(ResourceExistsError):
        client.restore_secret_backup(blob)
    client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError):
        client.restore_secret_backup(blob)  # still recoverable: the name is taken
    client.purge_deleted_secret(name)

    restored = client.restore_secret_backup(blob)
    assert restored.version == versions[-1].properties.version
    assert client.get_secret(name).value == "v2"
    again = client.get_secret(name, versions[0].properties.version)
    assert again.value == "v0" and again.properties.tags == {"i": "0"}
    assert again.properties.created_on == versions[0].properties.created_on


def test_invalid_requests_are_400_through_the_sdk(client):
    name = unique("limits")
    for bad in ("bad_name", "x" * 128):
        with pytest.raises(HttpResponseError) as info:
            client.set_secret(bad, "v")
        assert info.value.status_code == 400 and info.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as info:
        client.set_secret(name, "x" * (26 * 1024))
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        client.set_secret(name, "v", tags={f"t{i}": "v" for i in range(16)})
    assert info.value.status_code == 400
    # the limits themselves are accepted, and nothing above changed the vault
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    client.set_secret(name, "x" * (25 * 1024), tags={f"t{i}": "v" * 256 for i in range(15)})


def test_injected_faults_then_recovery(client, devstack):
    name = unique("faulty")
    client.set_secret(name, "v")
    fragile = SecretClient(devstack.vault_url, DefaultAzureCredential(),
                           verify_challenge_resource=False, retry_total=0)
    before = stats(devstack)
    try:
        devstack.faults("vault", 503, 1.0)
        with pytest.raises(HttpResponseError) as info:
            fragile.get_secret(name)
        assert info.value.status_code == 503
        with pytest.raises(HttpResponseError):
            fragile.set_secret(name, "must not be stored")
        devstack.faults("vault", 429, 1.0)
        with pytest.raises(HttpResponseError) as info:
            fragile.get_secret(name)
        assert info.value.status_code == 429
        assert info.value.response.headers["Retry-After"] == "1"
        assert info.value.error.code == "Throttled"
    finally:
        devstack.faults("vault", 503, 0)
    assert fragile.get_secret(name).value == "v"
    assert len(list(fragile.list_properties_of_secret_versions(name))) == 1
    assert stats(devstack)["throttled"] >= before["throttled"] + 1
    fragile.close()
