"""The authorization code flow with PKCE, driven by unmodified MSAL against devstack's Entra."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from devstack import seed
from tests.support.browserless import SignInError, auth_response, complete_sign_in, sign_in

CALLBACK = "http://localhost:8765/consent/callback"


def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def cpv_app(devstack, tenant: str = "organizations") -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=devstack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{devstack.authority}/{tenant}", instance_discovery=False)


def start(app, scopes=(seed.PARTNER_CENTER_SCOPE,), redirect_uri=CALLBACK, **kwargs) -> dict:
    return app.initiate_auth_code_flow(list(scopes), redirect_uri=redirect_uri,
                                       response_mode="form_post", **kwargs)


def test_msal_auth_code_flow_with_pkce_yields_mfa_backed_partner_center_tokens(devstack):
    app = cpv_app(devstack)
    flow = start(app, state="opaque-client-state")
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]

    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert response.method == "POST"
    assert response.url == CALLBACK
    assert response.params["state"] == "opaque-client-state"
    assert {"code", "client_info", "session_state"} <= set(response.params)
    result = app.acquire_token_by_auth_code_flow(flow, response.params)

    assert "error" not in result, result
    access = claims(result["access_token"])
    assert access["aud"] == seed.PARTNER_CENTER_RESOURCE
    assert access["tid"] == seed.PARTNER_TENANT_ID
    # Partner Center takes v1.0 tokens: issuer sts.windows.net (issue 14 point 3)
    assert access["iss"] == f"https://sts.windows.net/{seed.PARTNER_TENANT_ID}/"
    assert access["ver"] == "1.0"
    assert access["upn"] == access["unique_name"] == seed.PARTNER_ADMIN_UPN
    assert access["oid"] == seed.PARTNER_ADMIN_OBJECT_ID
    assert access["amr"] == ["pwd", "mfa"]
    assert access["scp"] == "user_impersonation"
    assert access["appid"] == seed.CPV_APP_ID
    assert seed.GLOBAL_ADMINISTRATOR in access["wids"]
    assert seed.ADMIN_AGENTS_GROUP_ID in access["groups"]
    assert access["iat"] <= access["nbf"] < access["exp"]
    identity = result["id_token_claims"]
    assert identity["aud"] == seed.CPV_APP_ID
    assert identity["preferred_username"] == seed.PARTNER_ADMIN_UPN
    assert identity["tid"] == seed.PARTNER_TENANT_ID
    assert identity["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert result["refresh_token"].startswith("0.A")
    # MSAL's cache knows the account through client_info
    [account] = app.get_accounts()
    assert account["home_account_id"] == f"{seed.PARTNER_ADMIN_OBJECT_ID}.{seed.PARTNER_TENANT_ID}"
    assert account["username"] == seed.PARTNER_ADMIN_UPN


def test_query_response_mode_redirects_with_code_and_state(devstack):
    app = cpv_app(devstack, seed.PARTNER_TENANT_DOMAIN)
    with pytest.warns(UserWarning, match="form_post"):
        flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE], redirect_uri=CALLBACK)
    url = complete_sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert url.startswith(CALLBACK + "?")
    params = auth_response(url)
    assert params["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert claims(result["access_token"])["aud"] == seed.PARTNER_CENTER_RESOURCE


@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:51004/consent/callback",
    "http://localhost:1/consent/callback",
    "https://localhost:44300/consent/callback",
])
def test_loopback_redirect_uris_match_on_any_port(devstack, redirect_uri):
    app = cpv_app(devstack)
    flow = start(app, redirect_uri=redirect_uri)
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert response.url == redirect_uri
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, response.params)


@pytest.mark.parametrize("redirect_uri", [
    "http://localhost:8765/other/callback",
    "http://127.0.0.2:8765/consent/callback",
    "https://evil.example/consent/callback",
    "http://localhost:8765/Consent/Callback",
])
def test_unregistered_redirect_uri_is_an_aadsts50011_page_never_a_redirect(devstack,
                                                                           redirect_uri):
    flow = start(cpv_app(devstack), redirect_uri=redirect_uri)
    response = requests.get(flow["auth_uri"], allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert 'id="error-code">AADSTS50011<' in response.text
    with pytest.raises(SignInError) as caught:
        sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert caught.value.code == 50011


def test_unknown_client_id_is_an_aadsts700016_page(devstack):
    url = (f"{devstack.authority}/organizations/oauth2/v2.0/authorize?client_id="
           "11111111-2222-4333-8444-555555555555&response_type=code&scope=openid"
           f"&redirect_uri={CALLBACK}")
    with pytest.raises(SignInError) as caught:
        sign_in(url, seed.PARTNER_ADMIN_UPN)
    assert caught.value.code == 700016


def test_single_tenant_app_through_organizations_is_an_aadsts50194_page(devstack):
    url = (f"{devstack.authority}/organizations/oauth2/v2.0/authorize?client_id="
           f"{seed.PARTNER_APP_ID}&response_type=code&scope=openid&redirect_uri={CALLBACK}")
    with pytest.raises(SignInError) as caught:
        sign_in(url, seed.PARTNER_ADMIN_UPN)
    assert caught.value.code == 50194


def test_replayed_code_is_aadsts54005_and_revokes_nothing_else(devstack):
    app = cpv_app(devstack)
    flow = start(app)
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    first = app.acquire_token_by_auth_code_flow(dict(flow), response.params)
    assert "access_token" in first

    replay = app.acquire_token_by_auth_code_flow(dict(flow), response.params)
    assert replay["error"] == "invalid_grant"
    assert replay["error_codes"] == [54005]
    assert replay["error_description"].startswith("AADSTS54005: OAuth2 Authorization code was "
                                                  "already redeemed")
    # unlike some servers, Entra does not revoke what the first redemption issued
    again = app.acquire_token_by_refresh_token(first["refresh_token"],
                                               [seed.PARTNER_CENTER_SCOPE])
    assert "access_token" in again, again


def test_pkce_verifier_mismatch_is_aadsts501481(devstack):
    app = cpv_app(devstack)
    flow = start(app)
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    tampered = dict(flow, code_verifier=secrets.token_urlsafe(48))
    result = app.acquire_token_by_auth_code_flow(tampered, response.params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [501481]
    assert "access_token" not in result
    # the code was not spent by the failed attempt: the genuine verifier still works
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, response.params)


def test_code_redeemed_with_another_redirect_uri_is_invalid_grant(devstack):
    app = cpv_app(devstack)
    flow = start(app)
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    result = app.acquire_token_by_auth_code_flow(
        dict(flow, redirect_uri="http://localhost:9999/consent/callback"), response.params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [70000]


def test_plain_pkce_challenge_is_accepted_as_entra_does(devstack):
    # RFC 7636 4.2 `plain`, which Entra accepts (issue 14 point 6, compared with the service;
    # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow lists
    # code_challenge_method "S256 or plain")
    verifier = "p" * 43
    url = (f"{devstack.authority}/organizations/oauth2/v2.0/authorize?client_id="
           f"{seed.CPV_APP_ID}&response_type=code&scope=openid&redirect_uri={CALLBACK}"
           f"&state=s1&code_challenge={verifier}&code_challenge_method=plain")
    response = sign_in(url, seed.PARTNER_ADMIN_UPN)
    assert response.error is None and response.params["state"] == "s1"

    def redeem(code: str, code_verifier: str) -> dict:
        return requests.post(f"{devstack.authority}/organizations/oauth2/v2.0/token", data={
            "client_id": seed.CPV_APP_ID, "grant_type": "authorization_code",
            "client_secret": devstack.env["BROKER_CPV_CLIENT_SECRET"], "code": code,
            "redirect_uri": CALLBACK, "code_verifier": code_verifier, "scope": "openid"},
            timeout=10).json()

    assert redeem(response.params["code"], "q" * 43)["error_codes"] == [501481]
    response = sign_in(url, seed.PARTNER_ADMIN_UPN)
    right = redeem(response.params["code"], verifier)
    assert "id_token" in right, right


def test_cancel_on_the_consent_page_is_access_denied_65004(devstack):
    app = cpv_app(devstack)
    flow = start(app, prompt="consent")
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN, consent=False)
    assert response.error == "access_denied"
    assert response.params["error_description"].startswith("AADSTS65004:")
    assert response.params["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert result["error"] == "access_denied"


def test_user_who_is_not_an_admin_agent_is_denied_partner_center(devstack):
    app = cpv_app(devstack)
    flow = start(app)
    response = sign_in(flow["auth_uri"], seed.PARTNER_USER_UPN)
    assert response.error == "access_denied"
    description = response.params["error_description"]
    assert description.startswith("AADSTS50105:")
    assert "AdminAgents" in description
    assert "code" not in response.params


def test_non_admin_cannot_grant_tenant_wide_consent_90094(devstack):
    app = msal.ConfidentialClientApplication(
        seed.PARTNER_APP_ID, client_credential=seed.PARTNER_APP_SECRET,
        authority=f"{devstack.authority}/{seed.PARTNER_TENANT_ID}", instance_discovery=False)
    flow = start(app, scopes=[seed.GRAPH_USER_READ_SCOPE], prompt="consent")
    response = sign_in(flow["auth_uri"], seed.PARTNER_AGENT_UPN, on_behalf=True)
    assert response.error == "access_denied"
    assert response.params["error_description"].startswith("AADSTS90094:")
    # consenting for themselves only is fine for a permission that needs no admin
    flow = start(app, scopes=[seed.GRAPH_USER_READ_SCOPE], prompt="consent")
    response = sign_in(flow["auth_uri"], seed.PARTNER_AGENT_UPN, on_behalf=False)
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert claims(result["access_token"])["scp"] == "User.Read"


def test_prompt_consent_shows_the_consent_page_even_when_granted(devstack):
    app = cpv_app(devstack)
    sign_in(start(app)["auth_uri"], seed.PARTNER_ADMIN_UPN)  # granted for the organization
    # granted: no consent page, so declining has nothing to decline
    response = sign_in(start(app)["auth_uri"], seed.PARTNER_ADMIN_UPN, consent=False)
    assert "code" in response.params
    # prompt=consent asks again
    response = sign_in(start(app, prompt="consent")["auth_uri"], seed.PARTNER_ADMIN_UPN,
                       consent=False)
    assert response.params["error_description"].startswith("AADSTS65004:")


def test_single_sign_on_session_and_prompt_none(devstack):
    app = cpv_app(devstack)
    browser = requests.Session()
    sign_in(start(app)["auth_uri"], seed.PARTNER_ADMIN_UPN, session=browser)
    # the session already did MFA and consent was granted: no page at all
    flow = start(app, prompt="none")
    response = sign_in(flow["auth_uri"], "nobody@ignored.example", "wrong", session=browser)
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert claims(result["access_token"])["amr"] == ["pwd", "mfa"]
    # a browser without a session gets login_required, not a page
    flow = start(app, prompt="none")
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert response.error == "login_required"
    assert response.params["error_description"].startswith("AADSTS50058:")


def test_select_account_offers_the_signed_in_account_and_another(devstack):
    app = cpv_app(devstack)
    browser = requests.Session()
    sign_in(start(app)["auth_uri"], seed.PARTNER_ADMIN_UPN, session=browser)
    flow = start(app, prompt="select_account")
    page = browser.get(flow["auth_uri"], timeout=10)
    assert f'value="{seed.PARTNER_ADMIN_UPN}"' in page.text
    assert 'value="other"' in page.text
    response = sign_in(flow["auth_uri"], seed.PARTNER_AGENT_UPN, session=browser)
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert claims(result["access_token"])["upn"] == seed.PARTNER_AGENT_UPN


def test_wrong_password_stays_on_the_sign_in_page(devstack):
    flow = start(cpv_app(devstack))
    with pytest.raises(SignInError, match="account or password is incorrect"):
        sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN, "not-the-password")


def test_wrong_mfa_code_is_refused(devstack):
    flow = start(cpv_app(devstack))
    with pytest.raises(SignInError, match="verification code"):
        sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN, otp="000000x")


def test_partner_own_app_signs_in_through_its_home_tenant(devstack):
    app = msal.ConfidentialClientApplication(
        seed.PARTNER_APP_ID, client_credential=seed.PARTNER_APP_SECRET,
        authority=f"{devstack.authority}/{seed.PARTNER_TENANT_DOMAIN}", instance_discovery=False)
    flow = start(app)
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN).params)
    access = claims(result["access_token"])
    assert access["appid"] == seed.PARTNER_APP_ID
    assert access["aud"] == seed.PARTNER_CENTER_RESOURCE


def test_operator_signs_in_to_the_operator_app_with_group_claims(devstack):
    app = msal.ConfidentialClientApplication(
        seed.OPERATOR_APP_ID, client_credential=seed.OPERATOR_APP_SECRET,
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    flow = app.initiate_auth_code_flow(["User.Read"],
                                       redirect_uri="http://localhost:5000/auth/callback",
                                       response_mode="form_post")
    response = sign_in(flow["auth_uri"], seed.OPERATOR_UPN)  # pre-consented: no consent page
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert seed.OPERATOR_GROUP_ID in result["id_token_claims"]["groups"]
    assert result["id_token_claims"]["tid"] == seed.CPV_TENANT_ID


def test_sign_in_only_scopes_yield_an_id_token_without_a_consent_page(devstack):
    app = msal.ConfidentialClientApplication(
        seed.OPERATOR_APP_ID, client_credential=seed.OPERATOR_APP_SECRET,
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    flow = app.initiate_auth_code_flow([], redirect_uri="http://127.0.0.1:5000/auth/callback",
                                       response_mode="form_post", prompt="select_account")
    response = sign_in(flow["auth_uri"], seed.OPERATOR_UPN, consent=False)
    result = app.acquire_token_by_auth_code_flow(flow, response.params, scopes=[])
    assert result["id_token_claims"]["preferred_username"] == seed.OPERATOR_UPN
    assert "refresh_token" in result


def test_a_session_in_another_tenant_is_not_reused(devstack):
    browser = requests.Session()
    operator_app = msal.ConfidentialClientApplication(
        seed.OPERATOR_APP_ID, client_credential=seed.OPERATOR_APP_SECRET,
        authority=f"{devstack.authority}/{seed.CPV_TENANT_ID}", instance_discovery=False)
    flow = operator_app.initiate_auth_code_flow(
        [], redirect_uri="http://localhost:5000/auth/callback", response_mode="form_post")
    sign_in(flow["auth_uri"], seed.OPERATOR_UPN, session=browser)
    # the operator's session does not sign anyone in to contoso: the sign-in page is shown
    app = cpv_app(devstack, seed.PARTNER_TENANT_ID)
    flow = start(app, prompt="none")
    response = sign_in(flow["auth_uri"], seed.OPERATOR_UPN, session=browser)
    assert response.error == "login_required"
    with pytest.raises(SignInError, match="doesn't exist in the 'Contoso Ltd' directory"):
        sign_in(start(app)["auth_uri"], seed.OPERATOR_UPN, session=browser)
