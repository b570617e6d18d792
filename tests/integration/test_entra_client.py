"""Client credentials, and client authentication on every confidential token request."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus

import msal
import requests

from devstack import seed


def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def token_url(devstack, tenant: str = seed.CPV_TENANT_ID) -> str:
    return f"{devstack.authority}/{tenant}/oauth2/v2.0/token"


def test_client_credentials_yield_an_app_token_with_roles(devstack):
    app = msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=devstack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{devstack.authority}/{seed.CPV_TENANT_DOMAIN}", instance_discovery=False)
    result = app.acquire_token_for_client([seed.GRAPH_RESOURCE + "/.default"])
    assert "refresh_token" not in result
    access = claims(result["access_token"])
    assert access["aud"] == seed.GRAPH_RESOURCE
    assert access["idtyp"] == "app"
    assert access["roles"] == ["Directory.Read.All"]
    assert access["appid"] == seed.CPV_APP_ID
    assert access["tid"] == seed.CPV_TENANT_ID
    assert "scp" not in access and "upn" not in access


def test_wrong_client_secret_is_7000215_invalid_client(devstack):
    app = msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential="not-the-secret",
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    result = app.acquire_token_for_client([seed.GRAPH_RESOURCE + "/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_expired_client_secret_is_7000222_invalid_client(devstack):
    app = msal.ConfidentialClientApplication(
        seed.PARTNER_APP_ID, client_credential=seed.PARTNER_APP_EXPIRED_SECRET,
        authority=f"{devstack.authority}/{seed.PARTNER_TENANT_ID}", instance_discovery=False)
    result = app.acquire_token_for_client([seed.GRAPH_RESOURCE + "/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000222]
    assert f"client secret keys for app '{seed.PARTNER_APP_ID}' are expired" in (
        result["error_description"])


def test_client_errors_are_http_401_and_grant_errors_400(devstack):
    bad_secret = requests.post(token_url(devstack), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "client_secret": "nope", "scope": seed.GRAPH_RESOURCE + "/.default"})
    assert bad_secret.status_code == 401
    bad_grant = requests.post(token_url(devstack), timeout=10, data={
        "grant_type": "refresh_token", "client_id": seed.CPV_APP_ID,
        "client_secret": devstack.env["BROKER_CPV_CLIENT_SECRET"], "refresh_token": "0.Ax"})
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "invalid_grant"


def test_unknown_app_is_700016(devstack):
    app = msal.ConfidentialClientApplication(
        "99999999-9999-4999-8999-999999999999", client_credential="whatever",
        authority=f"{devstack.authority}/{seed.PARTNER_TENANT_ID}", instance_discovery=False)
    result = app.acquire_token_for_client([seed.GRAPH_RESOURCE + "/.default"])
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]
    assert "was not found in the directory 'Contoso Ltd'" in result["error_description"]


def test_single_tenant_app_is_unknown_in_another_tenant(devstack):
    response = requests.post(token_url(devstack, seed.CPV_TENANT_ID), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.PARTNER_APP_ID,
        "client_secret": seed.PARTNER_APP_SECRET, "scope": seed.GRAPH_RESOURCE + "/.default"})
    assert response.json()["error_codes"] == [700016]


def test_client_secret_in_http_basic_authentication_is_accepted(devstack):
    secret = devstack.env["BROKER_CPV_CLIENT_SECRET"]
    basic = base64.b64encode(
        f"{quote_plus(seed.CPV_APP_ID)}:{quote_plus(secret)}".encode()).decode()
    response = requests.post(token_url(devstack), timeout=10,
                             headers={"Authorization": f"Basic {basic}"},
                             data={"grant_type": "client_credentials",
                                   "scope": seed.GRAPH_RESOURCE + "/.default"})
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_missing_client_secret_is_7000218(devstack):
    response = requests.post(token_url(devstack), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "scope": seed.GRAPH_RESOURCE + "/.default"})
    assert response.status_code == 401
    assert response.json()["error_codes"] == [7000218]


def test_client_credentials_need_a_dot_default_scope(devstack):
    response = requests.post(token_url(devstack), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "client_secret": devstack.env["BROKER_CPV_CLIENT_SECRET"],
        "scope": seed.GRAPH_USER_READ_SCOPE})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["error_codes"] == [1002012]


def test_client_credentials_for_an_unknown_resource_is_500011(devstack):
    response = requests.post(token_url(devstack), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "client_secret": devstack.env["BROKER_CPV_CLIENT_SECRET"],
        "scope": "https://unknown.example/.default"})
    assert response.json()["error"] == "invalid_resource"
    assert response.json()["error_codes"] == [500011]


def test_client_credentials_over_organizations_is_refused(devstack):
    response = requests.post(token_url(devstack, "organizations"), timeout=10, data={
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "client_secret": devstack.env["BROKER_CPV_CLIENT_SECRET"],
        "scope": seed.GRAPH_RESOURCE + "/.default"})
    assert response.status_code == 400
    assert response.json()["error_codes"] == [9001023]
