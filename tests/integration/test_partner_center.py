"""The Partner Center stub serves Admin Agents with MFA-backed tokens, and refuses the rest."""

from __future__ import annotations

import time
import uuid

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import seed
from devstack.tokens import Signer
from tests.support.browserless import consent_with_msal


@pytest.fixture(scope="module")
def signer(devstack) -> Signer:
    """devstack's own signing key, to mint tokens with exactly the claims a test needs."""
    signer = Signer(devstack.state_dir)
    signer.issuer_base = devstack.authority
    return signer


@pytest.fixture(scope="module")
def msal_token(devstack) -> str:
    return consent_with_msal(devstack.authority, seed.CPV_APP_ID,
                             devstack.env["BROKER_CPV_CLIENT_SECRET"])["access_token"]


def user_token(signer: Signer, **claims) -> str:
    values = {
        "tenant_id": seed.PARTNER_TENANT_ID, "audience": seed.PARTNER_CENTER_RESOURCE,
        "subject": seed.PARTNER_AGENT_OBJECT_ID, "app_id": seed.CPV_APP_ID,
        "upn": seed.PARTNER_AGENT_UPN, "amr": ["pwd", "mfa"], "scp": "user_impersonation",
        "groups": [seed.ADMIN_AGENTS_GROUP_ID], "idtyp": "user",
    }
    values.update(claims)
    return signer.access_token(**values)[0]


def call(devstack, path: str, token: str | None, **headers) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(devstack.env["BROKER_PARTNER_CENTER_URL"] + path, headers=headers,
                        timeout=10)


def assert_refused(response: requests.Response, status: int, code: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["description"] and body["errorMessage"] == body["description"]
    assert body["errorName"] and body["isRetryable"] is False
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


def test_admin_agent_with_mfa_reads_the_organization_profile(devstack, msal_token):
    correlation, request_id = str(uuid.uuid4()), str(uuid.uuid4())
    response = call(devstack, "/v1/profiles/organization", msal_token,
                    **{"MS-CorrelationId": correlation, "MS-RequestId": request_id})
    assert response.status_code == 200
    assert response.headers["MS-CorrelationId"] == correlation
    assert response.headers["MS-RequestId"] == request_id
    profile = response.json()
    assert profile["tenantId"] == profile["id"] == seed.PARTNER_TENANT_ID
    assert profile["companyName"] == seed.PARTNER_TENANT_NAME
    assert profile["attributes"]["objectType"] == "OrganizationProfile"
    assert {"address", "email", "culture", "language"} <= set(profile)


def test_admin_agent_with_mfa_lists_customers_page_by_page(devstack, msal_token):
    everyone = call(devstack, "/v1/customers", msal_token).json()
    assert everyone["totalCount"] == len(everyone["items"]) >= 3
    assert everyone["attributes"]["objectType"] == "Collection"
    first = everyone["items"][0]
    assert first["companyProfile"]["companyName"]
    assert first["relationshipToPartner"] == "reseller"
    page = call(devstack, "/v1/customers?size=2", msal_token).json()
    assert len(page["items"]) == 2
    [header] = page["links"]["next"]["headers"]
    rest = call(devstack, "/v1/customers?size=2", msal_token,
                **{header["key"]: header["value"]}).json()
    assert rest["items"][0] == everyone["items"][2]


def test_missing_token_is_401(devstack):
    assert_refused(call(devstack, "/v1/customers", None), 401, 800001)


def test_token_without_mfa_is_401(devstack, signer):
    body = assert_refused(call(devstack, "/v1/customers", user_token(signer, amr=["pwd"])),
                          401, 10001)
    assert "MFA" in body["description"]


def test_token_for_another_audience_is_401(devstack, signer):
    token = user_token(signer, audience=seed.GRAPH_RESOURCE)
    assert_refused(call(devstack, "/v1/customers", token), 401, 900302)


def test_token_signed_by_another_key_is_401(devstack, signer):
    genuine = jwt.decode(user_token(signer), options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(genuine, other_key, algorithm="RS256", headers={"kid": signer.kid})
    assert_refused(call(devstack, "/v1/customers", forged), 401, 900300)


def test_unsigned_token_is_401(devstack, signer):
    claims = jwt.decode(user_token(signer), options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert_refused(call(devstack, "/v1/profiles/organization", unsigned), 401, 900300)


def test_expired_token_is_401(devstack, signer):
    now = int(time.time())
    token = signer.sign({**jwt.decode(user_token(signer), options={"verify_signature": False}),
                         "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
    assert_refused(call(devstack, "/v1/customers", token), 401, 900301)


def test_user_who_is_not_an_admin_agent_is_403(devstack, signer):
    token = user_token(signer, subject=seed.PARTNER_USER_OBJECT_ID, upn=seed.PARTNER_USER_UPN,
                       groups=[])
    assert_refused(call(devstack, "/v1/customers", token), 403, 2032)


def test_app_only_token_is_401(devstack):
    app = msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=devstack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    token = app.acquire_token_for_client([seed.PARTNER_CENTER_DEFAULT_SCOPE])["access_token"]
    assert_refused(call(devstack, "/v1/customers", token), 401, 900303)


def test_malformed_correlation_id_is_replaced_with_a_guid(devstack):
    response = call(devstack, "/v1/customers", None, **{"MS-CorrelationId": "<script>"})
    assert str(uuid.UUID(response.headers["MS-CorrelationId"])) == (
        response.headers["MS-CorrelationId"])


def test_bad_page_size_is_400(devstack, signer):
    assert_refused(call(devstack, "/v1/customers?size=0", user_token(signer)), 400, 800002)


def test_unknown_path_is_a_json_404(devstack):
    response = call(devstack, "/v1/nothing-here", None)
    assert response.status_code == 404
    assert response.json()["isRetryable"] is False
