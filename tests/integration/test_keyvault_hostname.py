"""A Key Vault-like host name, `devvault.vault.localhost`, with the SDK's default verification.

Against `https://localhost:<port>` clients must pass `verify_challenge_resource=False`: the SDK
checks that the challenge's resource domain is a suffix of the vault's host. On a
`*.vault.localhost` host the vault names `https://vault.localhost:<port>` as the resource, so
the default check passes, as it does against `*.vault.azure.net`.

The name must resolve to loopback. glibc does not resolve `*.localhost` by itself, and teaching
the SDK's transport a resolver would no longer test the unmodified client, so the fixture adds
`127.0.0.1 devvault.vault.localhost` to /etc/hosts when it is missing and the tests run as root
(CI does), as `python -m devstack hosts` would; otherwise the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient

from devstack import hosts, seed

HOST = "devvault.vault.localhost"


def resolves_to_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, 443)}
    except socket.gaierror:
        return False
    return "127.0.0.1" in addresses


@pytest.fixture(scope="module")
def vault_url(devstack) -> str:
    if not resolves_to_loopback(HOST):
        lines = hosts.missing_lines([HOST])
        if os.geteuid() != 0:
            pytest.skip(f"{HOST} does not resolve; `sudo python -m devstack hosts` adds {lines}")
        hosts.add_lines(lines)
        assert resolves_to_loopback(HOST), f"{HOST} still does not resolve after editing hosts"
    return f"https://{HOST}:{urlsplit(devstack.vault_url).port}"


def test_default_challenge_verification_passes(vault_url, devstack):
    name = f"named-host-{uuid.uuid4().hex[:10]}"
    with SecretClient(vault_url, DefaultAzureCredential()) as client:
        secret = client.set_secret(name, "value")
        assert KeyVaultSecretIdentifier(secret.id).vault_url == vault_url
        assert client.get_secret(name).value == "value"
    # the same vault, so the secret is there under its localhost name too
    with SecretClient(devstack.vault_url, DefaultAzureCredential(),
                      verify_challenge_resource=False) as client:
        assert client.get_secret(name).value == "value"


def test_challenge_names_a_resource_the_host_ends_with(vault_url, devstack):
    port = urlsplit(vault_url).port
    response = requests.get(f"{vault_url}/secrets", params={"api-version": "7.6"},
                            verify=devstack.ca_bundle, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{devstack.authority}/{seed.CPV_TENANT_ID}", '
        f'resource="https://vault.localhost:{port}"'
    )


def test_localhost_needs_verification_off(devstack):
    with SecretClient(devstack.vault_url, DefaultAzureCredential()) as client, \
            pytest.raises(ValueError, match="does not match the requested domain"):
        client.get_secret("any")


def test_a_service_principal_gets_a_token_the_named_host_accepts(vault_url, devstack):
    """Client credentials for the resource the named host's challenge names (was AADSTS500011:
    only the managed identity endpoint issued tokens for it)."""
    from azure.identity import ClientSecretCredential

    resource = f"https://vault.localhost:{urlsplit(vault_url).port}"
    credential = ClientSecretCredential(seed.CPV_TENANT_ID, seed.CPV_APP_ID,
                                        devstack.env["BROKER_CPV_CLIENT_SECRET"],
                                        authority=devstack.authority,
                                        disable_instance_discovery=True)
    token = credential.get_token(f"{resource}/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"].rstrip("/") == resource and claims["tid"] == seed.CPV_TENANT_ID
    response = requests.get(f"{vault_url}/secrets", params={"api-version": "7.6"},
                            headers={"Authorization": f"Bearer {token}"},
                            verify=devstack.ca_bundle, timeout=10)
    assert response.status_code != 401, response.text  # authenticated (a role is RBAC's say)
