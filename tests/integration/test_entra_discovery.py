"""OIDC discovery and signing keys per tenant path, as MSAL reads them."""

from __future__ import annotations

import jwt
import msal
import pytest
import requests

from devstack import seed


def configuration(devstack, tenant: str) -> requests.Response:
    return requests.get(f"{devstack.authority}/{tenant}/v2.0/.well-known/openid-configuration",
                        timeout=10)


@pytest.mark.parametrize("tenant", [seed.PARTNER_TENANT_ID, seed.PARTNER_TENANT_DOMAIN,
                                    seed.PARTNER_TENANT_DOMAIN.upper()])
def test_tenant_configuration_names_the_tenant_guid(devstack, tenant):
    document = configuration(devstack, tenant).json()
    base = f"{devstack.authority}/{seed.PARTNER_TENANT_ID}"
    assert document["issuer"] == f"{base}/v2.0"
    assert document["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert "form_post" in document["response_modes_supported"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


def test_organizations_configuration_has_the_tenantid_placeholder_issuer(devstack):
    document = configuration(devstack, "organizations").json()
    assert document["issuer"] == f"{devstack.authority}/{{tenantid}}/v2.0"
    assert document["token_endpoint"] == f"{devstack.authority}/organizations/oauth2/v2.0/token"


def test_unknown_tenant_is_aadsts90002(devstack):
    response = configuration(devstack, "fabrikam.invalid")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant 'fabrikam.invalid' not found.")


def test_msal_refuses_an_unknown_tenant(devstack):
    with pytest.raises(ValueError, match="double check your tenant name") as caught:
        msal.ConfidentialClientApplication(
            seed.CPV_APP_ID, client_credential="x",
            authority=f"{devstack.authority}/nowhere.example", instance_discovery=False)
    assert "AADSTS90002" in str(caught.value.__context__)  # the discovery answer MSAL read


def test_tokens_verify_against_the_published_signing_keys(devstack):
    app = msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=devstack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    token = app.acquire_token_for_client([seed.GRAPH_RESOURCE + "/.default"])["access_token"]
    document = configuration(devstack, seed.CPV_TENANT_ID).json()
    keys = requests.get(document["jwks_uri"], timeout=10).json()["keys"]
    # Microsoft Graph takes v1.0 tokens: their issuer is the v1.0 document's
    v1 = requests.get(f"{devstack.authority}/{seed.CPV_TENANT_ID}/.well-known/openid-configuration",
                      timeout=10).json()
    header = jwt.get_unverified_header(token)
    [key] = [k for k in keys if k["kid"] == header["kid"]]
    assert header["alg"] == key["alg"] == "RS256"
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience=seed.GRAPH_RESOURCE, issuer=v1["issuer"])
    assert claims["tid"] == seed.CPV_TENANT_ID
