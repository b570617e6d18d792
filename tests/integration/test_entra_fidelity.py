"""Devstack's Entra against what the real service answers (issue 14, points 1 to 7).

Each test names the fixture, recording or page its expectation comes from. Point 1 (dead
refresh tokens, which needs the clock moved) is in `test_entra_bad_token.py`.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path

import jwt
import msal
import pytest
import requests
from cryptography import x509

from devstack import seed
from tests.support.browserless import CONSENT_CALLBACK, consent_with_msal, sign_in
from tests.support.devstack import running_devstack

ROOT = Path(__file__).resolve().parents[2]
MSAL_NODE_SCRIPT = ROOT / "tests" / "support" / "node" / "msal_refresh.mjs"
MALFORMED = "0.AXYZ-not-a-refresh-token-devstack-ever-issued"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def cpv_app(stack, tenant: str = "organizations") -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=stack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{stack.authority}/{tenant}", instance_discovery=False)


def token_request(stack, tenant: str = "organizations", query: str = "",
                  **form) -> requests.Response:
    return requests.post(f"{stack.authority}/{tenant}/oauth2/v2.0/token{query}", data={
        "client_id": seed.CPV_APP_ID, "client_secret": stack.env["BROKER_CPV_CLIENT_SECRET"],
        **form}, timeout=10)


@pytest.fixture(scope="module")
def admin_tokens(devstack) -> dict:
    """The admin's consent (tenant-wide) to Partner Center and Graph; tokens for the first."""
    app = cpv_app(devstack, seed.PARTNER_TENANT_ID)
    flow = app.initiate_auth_code_flow(
        [seed.PARTNER_CENTER_SCOPE, seed.GRAPH_RESOURCE + "/Directory.Read.All"],
        redirect_uri=CONSENT_CALLBACK, response_mode="form_post", prompt="consent")
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN).params,
        scopes=[seed.PARTNER_CENTER_SCOPE])
    assert "refresh_token" in result, result
    return result


# -- point 3: token versions ----------------------------------------------------------------

def test_partner_center_and_graph_access_tokens_are_v1(devstack, admin_tokens):
    # Microsoft's first-party APIs take v1.0 tokens: iss https://sts.windows.net/<tid>/,
    # `appid`/`appidacr`, no `azp` (https://learn.microsoft.com/entra/identity-platform/
    # access-token-claims-reference, "v1.0 and v2.0" and the claims table)
    app = cpv_app(devstack, seed.PARTNER_TENANT_ID)
    graph = app.acquire_token_by_refresh_token(admin_tokens["refresh_token"],
                                               [seed.GRAPH_RESOURCE + "/Directory.Read.All"])
    for token, audience in ((admin_tokens["access_token"], seed.PARTNER_CENTER_RESOURCE),
                            (graph["access_token"], seed.GRAPH_RESOURCE)):
        access = claims(token)
        assert access["aud"] == audience
        assert access["ver"] == "1.0"
        assert access["iss"] == f"https://sts.windows.net/{seed.PARTNER_TENANT_ID}/"
        assert access["appid"] == seed.CPV_APP_ID and access["appidacr"] == "1"
        assert access["upn"] == access["unique_name"] == seed.PARTNER_ADMIN_UPN
        assert "azp" not in access and "preferred_username" not in access


def test_v2_id_token_has_no_amr_auth_time_or_groups(devstack, admin_tokens):
    # https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference: amr is
    # v1.0 only, auth_time and groups are optional claims an app must ask for
    identity = admin_tokens["id_token_claims"]
    assert identity["ver"] == "2.0"
    assert identity["iss"] == f"{devstack.authority}/{seed.PARTNER_TENANT_ID}/v2.0"
    assert not {"amr", "auth_time", "groups"} & set(identity)


def test_an_app_asking_for_group_claims_gets_groups_in_its_id_token(devstack):
    # the operator app's manifest sets groupMembershipClaims (infra/README.md)
    app = msal.ConfidentialClientApplication(
        seed.OPERATOR_APP_ID, client_credential=seed.OPERATOR_APP_SECRET,
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    flow = app.initiate_auth_code_flow([], redirect_uri="http://localhost:8765/auth/callback",
                                       response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], seed.OPERATOR_UPN).params)
    assert result["id_token_claims"]["groups"] == [seed.OPERATOR_GROUP_ID]


def test_an_audience_requested_by_app_id_comes_back_as_that_guid(devstack, admin_tokens):
    # https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
    # (aud: "the Application ID URI or GUID", as the client asked for the resource)
    app = cpv_app(devstack, seed.PARTNER_TENANT_ID)
    result = app.acquire_token_by_refresh_token(
        admin_tokens["refresh_token"], [f"{seed.PARTNER_CENTER_APP_ID}/.default"])
    assert claims(result["access_token"])["aud"] == seed.PARTNER_CENTER_APP_ID
    # ... and Partner Center accepts it
    response = requests.get(f"{devstack.env['BROKER_PARTNER_CENTER_URL']}/v1/customers",
                            headers={"Authorization": f"Bearer {result['access_token']}"},
                            timeout=10)
    assert response.status_code == 200, response.text


def test_signing_keys_carry_x5t_x5c_and_issuer(devstack):
    # https://login.microsoftonline.com/common/discovery/v2.0/keys: every key has kty, use,
    # kid, x5t, n, e, x5c and issuer
    [key] = requests.get(f"{devstack.authority}/common/discovery/v2.0/keys",
                         timeout=10).json()["keys"]
    der = base64.b64decode(key["x5c"][0])
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324
    assert key["x5t"] == thumbprint
    certificate = x509.load_der_x509_certificate(der)
    numbers = certificate.public_key().public_numbers()
    assert jwt.PyJWK(key).key.public_numbers() == numbers
    assert key["issuer"] == f"{devstack.authority}/{{tenantid}}/v2.0"


# -- point 4: the v1.0 discovery document and discovery headers ------------------------------

def test_v1_discovery_document_and_its_sign_out_endpoint(devstack):
    # https://login.microsoftonline.com/<tenant>/.well-known/openid-configuration (v1.0), read
    # by the Microsoft identity web samples for end_session_endpoint
    response = requests.get(
        f"{devstack.authority}/{seed.PARTNER_TENANT_DOMAIN}/.well-known/openid-configuration",
        timeout=10)
    document = response.json()
    base = f"{devstack.authority}/{seed.PARTNER_TENANT_ID}"
    assert document["issuer"] == f"https://sts.windows.net/{seed.PARTNER_TENANT_ID}/"
    assert document["token_endpoint"] == f"{base}/oauth2/token"
    assert document["authorization_endpoint"] == f"{base}/oauth2/authorize"
    assert document["end_session_endpoint"] == f"{base}/oauth2/logout"
    assert requests.get(document["end_session_endpoint"], timeout=10).status_code == 200
    keys = requests.get(document["jwks_uri"], timeout=10)
    assert keys.status_code == 200 and keys.json()["keys"]


@pytest.mark.parametrize("path", ["v2.0/.well-known/openid-configuration",
                                  ".well-known/openid-configuration", "discovery/v2.0/keys"])
def test_discovery_answers_carry_entras_caching_and_cors_headers(devstack, path):
    # what login.microsoftonline.com sends with its discovery documents and keys
    response = requests.get(f"{devstack.authority}/common/{path}", timeout=10)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=86400, private"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["x-ms-request-id"]


# -- point 5: correlation and request ids ---------------------------------------------------

def test_client_request_id_query_parameter_is_the_correlation_id(devstack):
    # MSAL sends client-request-id as a query parameter of the token request (MSAL Node's
    # recordings: ...&client-request-id=...); Entra echoes it as the error's correlation_id
    correlation = str(uuid.uuid4())
    response = token_request(devstack, query=f"?client-request-id={correlation}",
                             grant_type="refresh_token", refresh_token=MALFORMED,
                             scope=seed.PARTNER_CENTER_SCOPE)
    body = response.json()
    assert body["correlation_id"] == correlation
    assert f"Correlation ID: {correlation}" in body["error_description"]
    assert response.headers["x-ms-request-id"] == body["trace_id"]


def test_every_answer_has_an_x_ms_request_id(devstack, admin_tokens):
    app = cpv_app(devstack, seed.PARTNER_TENANT_ID)
    assert app.acquire_token_by_refresh_token(admin_tokens["refresh_token"],
                                              [seed.PARTNER_CENTER_SCOPE])["access_token"]
    response = token_request(devstack, tenant=seed.PARTNER_TENANT_ID,
                             grant_type="refresh_token",
                             refresh_token=admin_tokens["refresh_token"],
                             scope=seed.PARTNER_CENTER_SCOPE)
    assert response.status_code == 200
    uuid.UUID(response.headers["x-ms-request-id"])


# -- point 6: a code redeemed without scope --------------------------------------------------

def test_a_code_redeemed_without_scope_is_for_the_first_requested_resource(devstack,
                                                                           admin_tokens):
    # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow ("the
    # scope parameter ... if it's not included, the token is for the first resource
    # requested"); Graph comes first here although Partner Center sorts first
    del admin_tokens  # the tenant-wide consent to both resources this needs
    scopes = f"openid {seed.GRAPH_RESOURCE}/Directory.Read.All {seed.PARTNER_CENTER_SCOPE}"
    url = (f"{devstack.authority}/{seed.PARTNER_TENANT_ID}/oauth2/v2.0/authorize?client_id="
           f"{seed.CPV_APP_ID}&response_type=code&redirect_uri={CONSENT_CALLBACK}"
           f"&scope={requests.utils.quote(scopes)}")
    code = sign_in(url, seed.PARTNER_ADMIN_UPN).params["code"]
    body = token_request(devstack, tenant=seed.PARTNER_TENANT_ID,
                         grant_type="authorization_code", code=code,
                         redirect_uri=CONSENT_CALLBACK).json()
    assert claims(body["access_token"])["aud"] == seed.GRAPH_RESOURCE


# -- point 7: the tenant's MFA policy --------------------------------------------------------

def test_without_conditional_access_a_user_with_no_mfa_method_gets_password_only_tokens(
        devstack):
    # MFA comes from the tenant's Conditional Access policy, not from Entra itself
    # (https://learn.microsoft.com/entra/identity/conditional-access/howto-conditional-access-policy-all-users-mfa);
    # Partner Center then refuses the token itself
    # (https://learn.microsoft.com/partner-center/security/partner-security-requirements-mandating-mfa)
    with devstack.mfa_not_required():
        result = consent_with_msal(devstack.authority, seed.CPV_APP_ID,
                                   devstack.env["BROKER_CPV_CLIENT_SECRET"],
                                   seed.PARTNER_NOMFA_UPN)
    access = claims(result["access_token"])
    assert access["amr"] == ["pwd"]
    response = requests.get(f"{devstack.env['BROKER_PARTNER_CENTER_URL']}/v1/customers",
                            headers={"Authorization": f"Bearer {result['access_token']}"},
                            timeout=10)
    assert response.status_code == 401
    assert response.json()["errorName"] == "MfaRequired"


def test_the_mfa_policy_switch_checks_its_input(devstack):
    url = devstack.env["DEVSTACK_ADMIN_URL"] + "/mfa"
    for body in ({"tenant": "nowhere.example", "required": False},
                 {"tenant": seed.PARTNER_TENANT_DOMAIN, "required": "no"}, {}):
        response = requests.post(url, json=body, timeout=10)
        assert response.status_code == 400, body


# -- issue 13: the connection and the network delay -----------------------------------------

def test_entra_keeps_connections_open_and_delays_every_endpoint(tmp_path):
    # `--latency entra=MS` is the network between a Function and Entra: discovery and keys pay
    # it as the token endpoint does, once per request, on a connection that stays open
    with running_devstack(tmp_path / "slow", "--latency", "entra=300") as slow:
        session = requests.Session()
        for path in ("/organizations/v2.0/.well-known/openid-configuration",
                     "/common/discovery/v2.0/keys"):
            started = time.monotonic()
            response = session.get(slow.authority + path, verify=slow.ca_bundle, timeout=10)
            assert response.status_code == 200
            assert time.monotonic() - started >= 0.3, path
            assert response.headers.get("Connection", "").lower() != "close"
        # both requests went over one connection
        manager = session.adapters["https://"].poolmanager
        [key] = manager.pools.keys()
        assert manager.pools[key].num_connections == 1
