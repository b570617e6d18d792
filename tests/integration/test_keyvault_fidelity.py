"""Devstack's vault against what the real service answers (issue 14, points 8 to 11).

Each test names the recording, sample or page its expectation comes from. Secret names are
unique per test: the devstack is shared.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from devstack.keyvault.settings import DELETE_SECONDS
from devstack.keyvault.validation import PREVIEW_API_VERSIONS
from tests.integration.test_keyvault_http import Vault, error_of, unique
from tests.support.devstack import environment, running_devstack


@pytest.fixture(scope="module")
def vault(devstack) -> Vault:
    token = DefaultAzureCredential().get_token("https://vault.azure.net/.default").token
    return Vault(devstack.vault_url, devstack.ca_bundle, token)


@pytest.fixture
def client(devstack) -> SecretClient:
    return SecretClient(devstack.vault_url, DefaultAzureCredential(),
                        verify_challenge_resource=False)


def test_connections_stay_open_between_requests(vault):
    # Azure's front ends answer HTTP/1.1 with keep-alive: the recordings carry no
    # `Connection: close` (azure-sdk-for-js keyvault-secrets recordings, e.g.
    # .../secret_client__list_secrets_in_various_ways/recording_can_list_deleted_secrets.js)
    parts = urlsplit(vault.url)
    context = ssl.create_default_context(cafile=vault.ca_bundle)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context,
                                             timeout=10)
    headers = {"Authorization": f"Bearer {vault.token}"}
    sockets = []
    for _ in range(3):
        connection.request("GET", "/secrets?api-version=7.6&maxresults=1", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert response.getheader("Connection", "").lower() != "close"
        assert int(response.getheader("Content-Length")) > 0
        sockets.append(connection.sock)
    connection.close()
    assert sockets[0] is not None and all(s is sockets[0] for s in sockets)


def test_standard_response_headers(vault):
    # the headers every answer carries in the recordings cited above
    response = vault.call("GET", f"/secrets/{unique('absent')}")
    assert response.status_code == 404
    headers = response.headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Strict-Transport-Security"] == "max-age=31536000;includeSubDomains"
    assert headers["X-Content-Type-Options"] == "nosniff"
    for name in ("x-ms-request-id", "x-ms-keyvault-service-version", "x-ms-keyvault-region"):
        assert headers[name]


def test_deleted_secret_whose_latest_version_is_disabled_is_403(vault, client):
    # issue 14 point 8 (compared with the service): GET /deletedsecrets/<name> of a disabled
    # secret answers as a GET of a disabled secret does, 403 Forbidden / SecretDisabled
    name = unique("disabled")
    client.set_secret(name, "v", enabled=False)
    client.begin_delete_secret(name).wait()
    response = vault.call("GET", f"/deletedsecrets/{name}")
    assert response.status_code == 403
    assert error_of(response)["innererror"]["code"] == "SecretDisabled"


def test_put_without_a_name_is_404_not_found(vault):
    # Key Vault routes `PUT /secrets/` to no operation: 404 NotFound, not 405
    response = vault.put("", {"value": "v"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "NotFound"


def test_out_content_type_on_a_plain_secret_is_400(vault, client):
    # https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret
    # (outContentType "only applies to secrets backing certificates")
    name = unique("plain")
    client.set_secret(name, "v")
    response = vault.call("GET", f"/secrets/{name}",
                          params={"outContentType": "application/x-pem-file"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "BadParameter"


@pytest.mark.parametrize("api_version", PREVIEW_API_VERSIONS)
def test_preview_api_versions_are_accepted(vault, api_version):
    # the preview versions azure-rest-api-specs publishes for the secrets data plane
    # (specification/keyvault/data-plane/Microsoft.KeyVault/preview/<version>)
    response = vault.call("GET", "/secrets", api_version=api_version, params={"maxresults": 1})
    assert response.status_code == 200, response.text


def test_purge_protection_refuses_the_purge_and_reports_recoverable(devstack, client):
    # https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview#purge-protection
    # recovery level `Recoverable` with purge protection; the refusal is 403 Forbidden
    # 'Operation "purge" is not allowed because purge protection is enabled for this vault.'
    name = unique("protected")
    devstack.vault_settings(purge_protection=True)
    try:
        secret = client.set_secret(name, "v")
        assert secret.properties.recovery_level == "Recoverable"
        client.begin_delete_secret(name).wait()
        with pytest.raises(HttpResponseError) as refused:
            client.purge_deleted_secret(name)
        assert refused.value.status_code == 403
        assert "purge protection is enabled" in refused.value.message
        assert client.get_deleted_secret(name).name == name  # still there, recoverable
        client.begin_recover_deleted_secret(name).wait()
    finally:
        devstack.vault_settings(purge_protection=False)
    assert client.get_secret(name).properties.recovery_level == "Recoverable+Purgeable"


def test_a_write_whose_answer_is_lost_was_stored(devstack, vault, client):
    # the network drops the answer after the service committed: the client sees the
    # connection end and the write is there anyway (azure-core calls this a
    # ServiceResponseError, "the request was sent but the response was not received":
    # https://learn.microsoft.com/python/api/azure-core/azure.core.exceptions.serviceresponseerror)
    name = unique("lost")
    devstack.faults("vault", "lost-answer", 1)
    try:
        with pytest.raises(requests.ConnectionError):
            vault.put(name, {"value": "first"})
    finally:
        devstack.faults("vault", "lost-answer", 0)
    assert client.get_secret(name).value == "first"
    assert devstack.state()["answers_lost"]["vault"] >= 1


def test_the_sdk_retries_a_lost_answer_and_every_retry_stores_a_version(devstack, client):
    # azure-core's RetryPolicy retries a PUT whose answer was lost (PUT is in its default
    # retry_on_methods; azure-core README, "Retry Policy"); each attempt commits a version
    name = unique("retried")
    devstack.faults("vault", "lost-answer", 1)
    try:
        with pytest.raises(ServiceResponseError):
            client.set_secret(name, "same", retry_total=2, retry_backoff_factor=0)
    finally:
        devstack.faults("vault", "lost-answer", 0)
    versions = list(client.list_properties_of_secret_versions(name))
    assert len(versions) == 3
    assert client.get_secret(name).value == "same"


def test_server_side_request_counts_by_route(devstack, client):
    # devstack's own counters (issue 13: requests per rotation counted at the server)
    name = unique("counted")
    devstack.admin("/stats/reset")
    client.set_secret(name, "v")
    client.get_secret(name)
    rows = {(r["service"], r["method"], r["route"]): r for r in devstack.stats()["requests"]}
    assert rows[("vault", "PUT", "/secrets/<name>")]["statuses"].get("200") == 1
    # the SDK asks for the latest version as `/secrets/<name>/`
    assert rows[("vault", "GET", "/secrets/<name>/")]["count"] == 1


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """A devstack of its own with Key Vault's real timing."""
    with running_devstack(tmp_path_factory.mktemp("realistic"), "--realistic") as stack, \
            environment(stack.env):
        yield stack


def test_realistic_delete_takes_seconds_and_refuses_purge_meanwhile(realistic):
    # a delete completes after seconds; meanwhile the deleted secret is 404 and a purge or a
    # recover is 409 Conflict / ObjectIsBeingDeleted (azure-sdk-for-js keyvault-keys
    # recordings: "Key is currently being deleted.", innererror ObjectIsBeingDeleted)
    credential = DefaultAzureCredential()
    vault = Vault(realistic.vault_url, realistic.ca_bundle,
                  credential.get_token("https://vault.azure.net/.default").token)
    name = unique("slow")
    assert vault.put(name, {"value": "v"}).status_code == 200
    started = time.monotonic()
    assert vault.call("DELETE", f"/secrets/{name}").status_code == 200
    assert vault.call("GET", f"/secrets/{name}").status_code == 404
    assert vault.call("GET", f"/deletedsecrets/{name}").status_code == 404
    for method, path in (("DELETE", f"/deletedsecrets/{name}"),
                         ("POST", f"/deletedsecrets/{name}/recover")):
        response = vault.call(method, path)
        assert response.status_code == 409
        assert error_of(response)["innererror"]["code"] == "ObjectIsBeingDeleted"
    while vault.call("GET", f"/deletedsecrets/{name}").status_code == 404:
        assert time.monotonic() - started < DELETE_SECONDS + 5
        time.sleep(0.2)
    assert time.monotonic() - started >= DELETE_SECONDS - 0.1
    assert vault.call("DELETE", f"/deletedsecrets/{name}").status_code == 204
    # the SDK's delete poller waits for it (it polls GET /deletedsecrets/<name>)
    client = SecretClient(realistic.vault_url, credential, verify_challenge_resource=False)
    polled = unique("polled")
    client.set_secret(polled, "v")
    started = time.monotonic()
    client.begin_delete_secret(polled).wait()
    assert time.monotonic() - started >= DELETE_SECONDS - 0.1
    client.purge_deleted_secret(polled)


def test_realistic_pages_are_short_or_empty_and_the_sdk_reads_them_all(realistic):
    # Key Vault may answer a page with fewer items than maxresults, even none, and a nextLink
    # (https://learn.microsoft.com/rest/api/keyvault/secrets/get-secrets/get-secrets:
    # "the nextLink ... to get the next page"; clients must follow it until it is null)
    credential = DefaultAzureCredential()
    client = SecretClient(realistic.vault_url, credential, verify_challenge_resource=False)
    names = {unique("paged") for _ in range(30)}
    for name in names:
        client.set_secret(name, "v")
    vault = Vault(realistic.vault_url, realistic.ca_bundle,
                  credential.get_token("https://vault.azure.net/.default").token)
    sizes, link = [], "/secrets"
    while link:
        page = vault.call("GET", link, api_version=None if link.startswith("https") else "7.6",
                          params={"maxresults": 25} if not link.startswith("https") else None)
        body = page.json()
        sizes.append(len(body["value"]))
        link = body["nextLink"]
    assert sum(sizes) >= len(names)
    assert any(size < 25 for size in sizes[:-1]), sizes  # a short page that is not the last
    listed = {p.name for p in client.list_properties_of_secrets()}
    assert names <= listed


def test_vault_settings_are_checked(devstack):
    # the admin endpoint's own input checks: a bad switch changes nothing
    response = requests.post(devstack.env["DEVSTACK_ADMIN_URL"] + "/vaults",
                             json={"vault": "nope"}, verify=devstack.ca_bundle, timeout=10)
    assert response.status_code == 400
    response = requests.post(devstack.env["DEVSTACK_ADMIN_URL"] + "/vaults",
                             json={"purge_protection": "yes"}, verify=devstack.ca_bundle,
                             timeout=10)
    assert response.status_code == 400
    assert json.loads(response.text)["message"]
