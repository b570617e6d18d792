"""devstack's vaults enforce Azure RBAC, and its identity endpoint serves several identities.

The what-may-who table of the broker's own identities is in test_least_privilege.py; this file
proves the emulator's parts: the 403 as Key Vault words it, scopes (vault, one secret, case),
`POST /rbac`, the identity endpoint's selectors, the env file and the seeded config vault.
"""

from __future__ import annotations

import json
import uuid

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from devstack import seed

USER = "Key Vault Secrets User"


def client(url: str, credential) -> SecretClient:
    return SecretClient(url, credential, verify_challenge_resource=False, retry_total=0)


def consumer(identity: seed.Identity = seed.CONSUMER_A_IDENTITY) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(client_id=identity.client_id)


@pytest.fixture
def secret(devstack) -> str:
    """A secret in the token vault, written by the operator (Key Vault Administrator)."""
    name = f"rt-rbac-{uuid.uuid4().hex[:10]}"
    with client(devstack.vault_url, DefaultAzureCredential()) as admin:
        admin.set_secret(name, "token-value")
    return name


@pytest.fixture
def grants(devstack):
    """Role assignments made by a test, removed after it."""
    made: list[tuple[str, str, str]] = []

    def grant(principal: str, role: str, scope: str) -> None:
        devstack.grant(principal, role, scope)
        made.append((principal, role, scope))

    yield grant
    for principal, role, scope in made:
        devstack.ungrant(principal, role, scope)


def test_a_refusal_is_key_vaults_403_naming_caller_action_and_resource(devstack, secret):
    token = consumer().get_token(f"{seed.VAULT_RESOURCE}/.default").token
    response = requests.get(f"{devstack.vault_url}secrets/{secret}", params={"api-version": "7.6"},
                            headers={"Authorization": f"Bearer {token}"},
                            verify=devstack.ca_bundle, timeout=10)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Forbidden"
    assert error["innererror"] == {"code": "ForbiddenByRbac"}
    lines = error["message"].split("\r\n")
    assert lines[0] == "Caller is not authorized to perform action on resource."
    assert lines[2] == (f"Caller: appid={seed.CONSUMER_A_IDENTITY.client_id};"
                        f"oid={seed.CONSUMER_A_IDENTITY.object_id};"
                        f"iss={jwt.decode(token, options={'verify_signature': False})['iss']}")
    assert lines[3] == "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"
    assert lines[4] == f"Resource: '{devstack.scope(secret).lower()}'"
    assert lines[5:9] == ["Assignment: (not found)", "DenyAssignmentId: null",
                          "DecisionReason: 'DeniedWithNoValidRBAC' ",
                          f"Vault: {seed.TOKEN_VAULT_NAME};location={seed.LOCATION}"]


def test_a_secret_scoped_grant_reads_that_secret_only_and_cannot_list(devstack, secret, grants):
    with client(devstack.vault_url, consumer()) as vault:
        with pytest.raises(HttpResponseError) as before:
            vault.get_secret(secret)
        assert before.value.status_code == 403

        # granted on the name in another case: Key Vault names are case-insensitive
        grants(seed.CONSUMER_A_IDENTITY.object_id, USER, devstack.scope(secret.upper()))
        assert vault.get_secret(secret).value == "token-value"
        assert [v.name for v in vault.list_properties_of_secret_versions(secret)] == [secret]

        with pytest.raises(HttpResponseError) as listing:
            list(vault.list_properties_of_secrets())
        assert listing.value.status_code == 403
        assert "readMetadata/action" in listing.value.message
        assert f"Resource: '{devstack.scope().lower()}'" in listing.value.message
        with pytest.raises(HttpResponseError) as write:
            vault.set_secret(secret, "forged")
        assert "setSecret/action" in write.value.message

    with client(devstack.vault_url, consumer(seed.CONSUMER_B_IDENTITY)) as other:
        with pytest.raises(HttpResponseError) as refused:
            other.get_secret(secret)
        assert refused.value.status_code == 403


def test_removing_a_grant_takes_effect_at_once(devstack, secret):
    principal = seed.CONSUMER_B_IDENTITY.object_id
    devstack.grant(principal, "4633458b-17de-408a-b874-0445c86b69e6", devstack.scope(secret))
    with client(devstack.vault_url, consumer(seed.CONSUMER_B_IDENTITY)) as vault:
        assert vault.get_secret(secret).value == "token-value"
        removed = devstack.ungrant(principal, USER, devstack.scope(secret))
        assert removed["changed"] is True
        with pytest.raises(HttpResponseError) as refused:
            vault.get_secret(secret)
        assert refused.value.status_code == 403


def test_post_rbac_lists_adds_and_refuses_bad_input_changing_nothing(devstack):
    listed = devstack.admin("/rbac", {"op": "list",
                                      "principalId": seed.ROTATION_IDENTITY.object_id})
    assert {(a["roleName"], a["scope"]) for a in listed["assignments"]} == {
        ("Key Vault Secrets Officer", devstack.scope()),
        (USER, devstack.scope(vault="config")),
    }
    assert all(a["roleDefinitionId"].startswith("/providers/Microsoft.Authorization/"
                                                "roleDefinitions/") for a in listed["assignments"])
    before = requests.get(devstack.env["DEVSTACK_ADMIN_URL"] + "/rbac", verify=devstack.ca_bundle,
                          timeout=10).json()
    bad = [
        {"op": "add", "principalId": "not-a-guid", "roleDefinitionId": USER,
         "scope": devstack.scope()},
        {"op": "add", "principalId": seed.CONSUMER_A_IDENTITY.object_id,
         "roleDefinitionId": "Owner", "scope": devstack.scope()},
        {"op": "add", "principalId": seed.CONSUMER_A_IDENTITY.object_id,
         "roleDefinitionId": USER, "scope": "/subscriptions/other/resourceGroups/x"},
        {"op": "grant"},
    ]
    for body in bad:
        response = requests.post(devstack.env["DEVSTACK_ADMIN_URL"] + "/rbac", json=body,
                                 verify=devstack.ca_bundle, timeout=10)
        assert response.status_code == 400, body
        assert "'" in response.json()["message"]  # names the field
    after = requests.get(devstack.env["DEVSTACK_ADMIN_URL"] + "/rbac", verify=devstack.ca_bundle,
                         timeout=10).json()
    assert after == before
    # assignments live in the state dir, where a restarted devstack finds them
    saved = json.loads((devstack.state_dir / "rbac.json").read_text())
    assert len(saved["assignments"]) == len(after["assignments"])


@pytest.mark.parametrize("selector", ["client_id", "object_id", "mi_res_id", None])
def test_the_identity_endpoint_picks_identities_the_app_service_way(devstack, selector):
    identity = seed.CONSUMER_B_IDENTITY if selector else seed.SYSTEM_IDENTITY
    value = {"client_id": identity.client_id, "object_id": identity.object_id,
             "mi_res_id": identity.resource_id}.get(selector)
    params = {"api-version": "2019-08-01", "resource": seed.VAULT_RESOURCE}
    if selector:
        params[selector] = value
    response = requests.get(devstack.env["IDENTITY_ENDPOINT"], params=params, timeout=10,
                            headers={"X-IDENTITY-HEADER": devstack.env["IDENTITY_HEADER"]})
    assert response.status_code == 200
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert (claims["oid"], claims["appid"], claims["tid"]) == (
        identity.object_id, identity.client_id, seed.CPV_TENANT_ID)
    assert response.json()["client_id"] == identity.client_id


def test_an_unknown_identity_is_refused(devstack):
    response = requests.get(devstack.env["IDENTITY_ENDPOINT"], timeout=10, params={
        "api-version": "2019-08-01", "resource": seed.VAULT_RESOURCE,
        "client_id": str(uuid.uuid4())}, headers={"X-IDENTITY-HEADER": devstack.env[
            "IDENTITY_HEADER"]})
    assert response.status_code == 400
    assert "No managed identity" in response.json()["error_description"]


def test_the_env_file_names_each_identity_and_how_to_pick_it(devstack):
    text = (devstack.state_dir / "env").read_text()
    for identity in seed.IDENTITIES:
        assert devstack.env[f"DEVSTACK_{identity.key}_CLIENT_ID"] == identity.client_id
        assert devstack.env[f"DEVSTACK_{identity.key}_OBJECT_ID"] == identity.object_id
        comment = text.split(f"export DEVSTACK_{identity.key}_CLIENT_ID=")[0].splitlines()[-1]
        assert comment.startswith("# ") and identity.name in comment
        if identity.user_assigned:
            assert "AZURE_CLIENT_ID" in comment and "ManagedIdentityCredential" in comment
    assert devstack.config_vault_url != devstack.vault_url


def test_the_config_vault_is_a_vault_of_its_own_holding_the_brokers_secrets(devstack):
    with client(devstack.config_vault_url, DefaultAzureCredential()) as config, \
            client(devstack.vault_url, DefaultAzureCredential()) as tokens:
        names = {p.name for p in config.list_properties_of_secrets()}
        assert {seed.SIGNING_KEY_SECRET, seed.CPV_SECRET_NAME,
                seed.OPERATOR_SECRET_NAME} <= names
        # seeded as one version (other tests may add versions, as a renewal would)
        seeded = {config.get_secret(seed.CPV_SECRET_NAME, v.version).value for v in
                  config.list_properties_of_secret_versions(seed.CPV_SECRET_NAME)}
        assert devstack.env["BROKER_CPV_CLIENT_SECRET"] in seeded
        assert len(config.get_secret(seed.SIGNING_KEY_SECRET).value) >= 48
        assert not names & {p.name for p in tokens.list_properties_of_secrets()}
