"""Malformed requests get Entra's documented errors: never a 500, never a token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack import seed

CALLBACK = "http://localhost:8765/consent/callback"


def post_token(devstack, data=None, tenant="organizations", **kwargs) -> requests.Response:
    return requests.post(f"{devstack.authority}/{tenant}/oauth2/v2.0/token", data=data,
                         timeout=10, **kwargs)


def assert_entra_error(response: requests.Response, code: int, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)
    assert "access_token" not in body
    return body


def secret(devstack) -> str:
    return devstack.env["BROKER_CPV_CLIENT_SECRET"]


@pytest.mark.parametrize(("data", "code", "error"), [
    ({}, 900144, "invalid_request"),
    ({"grant_type": "password", "client_id": seed.CPV_APP_ID}, 70003, "unsupported_grant_type"),
    ({"grant_type": "refresh_token"}, 900144, "invalid_request"),
    ({"grant_type": "refresh_token", "client_id": "not-a-guid"}, 700016, "unauthorized_client"),
    ({"grant_type": "refresh_token", "client_id": "x" * 9000}, 9002313, "invalid_request"),
])
def test_malformed_token_requests(devstack, data, code, error):
    assert assert_entra_error(post_token(devstack, data), code)["error"] == error


@pytest.mark.parametrize(("extra", "code", "error"), [
    ({"grant_type": "authorization_code", "redirect_uri": CALLBACK}, 900144, "invalid_request"),
    ({"grant_type": "authorization_code", "code": "1.Ajunk", "redirect_uri": CALLBACK},
     9002313, "invalid_grant"),
    ({"grant_type": "authorization_code", "code": "\u0000\u202e\U0001f600",
      "redirect_uri": CALLBACK}, 9002313, "invalid_grant"),
    ({"grant_type": "authorization_code", "code": "1.Ajunk"}, 900144, "invalid_request"),
    ({"grant_type": "refresh_token"}, 900144, "invalid_request"),
    ({"grant_type": "refresh_token", "refresh_token": "eyJhbGciOiJub25lIn0.e30."},
     9002313, "invalid_grant"),
    ({"grant_type": "client_credentials"}, 900144, "invalid_request"),
])
def test_grants_with_missing_or_forged_parts(devstack, extra, code, error):
    data = {"client_id": seed.CPV_APP_ID, "client_secret": secret(devstack), **extra}
    body = assert_entra_error(post_token(devstack, data, tenant=seed.PARTNER_TENANT_ID), code)
    assert body["error"] == error


def test_get_on_the_token_endpoint_is_900561(devstack):
    response = requests.get(f"{devstack.authority}/organizations/oauth2/v2.0/token", timeout=10)
    assert_entra_error(response, 900561)


def test_json_body_is_not_a_form_so_grant_type_is_missing(devstack):
    response = post_token(devstack, json={"grant_type": "client_credentials",
                                          "client_id": seed.CPV_APP_ID})
    assert_entra_error(response, 900144)


def test_huge_body_is_an_invalid_request(devstack):
    response = post_token(devstack, {"grant_type": "refresh_token",
                                     "refresh_token": "0.A" + "x" * 400_000})
    assert_entra_error(response, 9002313)


def test_non_utf8_form_body_is_an_ordinary_error(devstack):
    response = post_token(devstack, b"grant_type=\xff\xfe&client_id=\xc3\x28",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "access_token" not in response.json()


def test_client_assertion_is_not_accepted_as_a_secret(devstack):
    response = post_token(devstack, {
        "grant_type": "client_credentials", "client_id": seed.CPV_APP_ID,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "eyJhbGciOiJub25lIn0.e30.", "scope": "https://x/.default"},
        tenant=seed.CPV_TENANT_ID)
    assert_entra_error(response, 700027, 401)


@pytest.mark.parametrize(("tenant", "code"), [
    ("nowhere.example", 90002),
    ("00000000-0000-4000-8000-000000000000", 90002),
    ("bad%20tenant", 900023),
    ("a" * 300, 900023),
    ("%00", 900023),
])
def test_unknown_or_invalid_tenants(devstack, tenant, code):
    response = post_token(devstack, {"grant_type": "client_credentials"}, tenant=tenant)
    assert_entra_error(response, code)


def authorize_url(devstack, tenant="organizations", **params) -> str:
    base = {"client_id": seed.CPV_APP_ID, "response_type": "code", "redirect_uri": CALLBACK,
            "scope": seed.PARTNER_CENTER_SCOPE, "state": "st"}
    base.update(params)
    query = urlencode({k: v for k, v in base.items() if v is not None})
    return f"{devstack.authority}/{tenant}/oauth2/v2.0/authorize?{query}"


@pytest.mark.parametrize(("params", "code"), [
    ({"client_id": None}, 900144),
    ({"redirect_uri": None}, 900971),
    ({"client_id": "zzz"}, 700016),
    ({"redirect_uri": "javascript:alert(1)"}, 50011),
    ({"redirect_uri": "http://localhost:notaport/consent/callback"}, 50011),
])
def test_authorize_errors_before_the_redirect_uri_is_trusted_are_pages(devstack, params, code):
    response = requests.get(authorize_url(devstack, **params), allow_redirects=False,
                            timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert f'id="error-code">AADSTS{code}<' in response.text


@pytest.mark.parametrize(("params", "error", "code"), [
    ({"response_type": "token"}, "unsupported_response_type", 70005),
    ({"response_type": None}, "invalid_request", 900144),
    ({"scope": None}, "invalid_request", 900144),
    ({"scope": "https://unknown.example/read"}, "invalid_resource", 500011),
    ({"scope": seed.PARTNER_CENTER_RESOURCE + "/Everything.ReadWrite"}, "invalid_scope", 70011),
    ({"scope": "offline_access"}, "invalid_scope", 70011),
    ({"prompt": "bogus"}, "invalid_request", 90023),
    ({"prompt": "none login"}, "invalid_request", 90023),
    ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request", 501491),
    ({"code_challenge_method": "S256"}, "invalid_request", 900144),
    ({"response_mode": "carrier_pigeon"}, "invalid_request", 70007),
    ({"max_age": "-1"}, "invalid_request", 90100),
])
def test_authorize_errors_after_it_go_back_to_the_client(devstack, params, error, code):
    response = requests.get(authorize_url(devstack, **params), allow_redirects=False,
                            timeout=10)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["error"] == error
    assert query["error_description"].startswith(f"AADSTS{code}: ")
    assert query["state"] == "st"
    assert "code" not in query


def test_huge_query_string_is_an_aadsts90015_page(devstack):
    response = requests.get(authorize_url(devstack, state="s" * 20_000), timeout=10)
    assert response.status_code == 400
    assert 'id="error-code">AADSTS90015<' in response.text


@pytest.mark.parametrize("path", ["login", "SAS/ProcessAuth", "Consent/Set", "select_account"])
def test_sign_in_forms_without_a_live_flow_are_refused(devstack, path):
    response = requests.post(f"{devstack.authority}/organizations/{path}", timeout=10,
                             data={"ctx": "forged", "flowToken": "forged",
                                   "username": seed.PARTNER_ADMIN_UPN,
                                   "password": seed.PASSWORD, "accept": "accept"})
    assert response.status_code == 400
    assert 'id="error-code">AADSTS50089<' in response.text


def test_a_flow_cannot_be_continued_from_another_browser(devstack):
    mine = requests.Session()
    page = mine.get(authorize_url(devstack), timeout=10)
    ctx = page.text.split('name="ctx" value="')[1].split('"')[0]
    flow_token = page.text.split('name="flowToken" value="')[1].split('"')[0]
    response = requests.post(f"{devstack.authority}/organizations/login", timeout=10, data={
        "ctx": ctx, "flowToken": flow_token, "username": seed.PARTNER_ADMIN_UPN,
        "password": seed.PASSWORD})
    assert 'id="error-code">AADSTS50089<' in response.text


def test_consent_cannot_be_posted_before_mfa_is_done(devstack):
    browser = requests.Session()
    page = browser.get(authorize_url(devstack, prompt="consent"), timeout=10)

    def hidden(html: str, name: str) -> str:
        return html.split(f'name="{name}" value="')[1].split('"')[0]

    mfa = browser.post(f"{devstack.authority}/organizations/login", timeout=10, data={
        "ctx": hidden(page.text, "ctx"), "flowToken": hidden(page.text, "flowToken"),
        "username": seed.PARTNER_ADMIN_UPN, "password": seed.PASSWORD})
    assert 'id="dev-otp"' in mfa.text
    skipped = browser.post(f"{devstack.authority}/organizations/Consent/Set", timeout=10,
                           allow_redirects=False, data={
                               "ctx": hidden(mfa.text, "ctx"),
                               "flowToken": hidden(mfa.text, "flowToken"),
                               "accept": "accept", "consent_on_behalf": "on"})
    assert skipped.status_code == 400
    assert 'id="error-code">AADSTS50089<' in skipped.text


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(
    st.sampled_from(["grant_type", "client_id", "client_secret", "code", "refresh_token",
                     "scope", "redirect_uri", "code_verifier", "client_info", "x"]),
    st.one_of(st.text(max_size=60), st.sampled_from(
        ["authorization_code", "refresh_token", "client_credentials", seed.CPV_APP_ID,
         seed.PARTNER_CENTER_SCOPE, "https://graph.microsoft.com/.default"]))))
def test_fuzzed_token_requests_never_500_and_never_issue_a_token(devstack, data):
    response = post_token(devstack, data, tenant=seed.PARTNER_TENANT_ID)
    assert 400 <= response.status_code < 500
    assert "access_token" not in response.json()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(
    st.sampled_from(["client_id", "response_type", "redirect_uri", "scope", "state", "prompt",
                     "code_challenge", "code_challenge_method", "response_mode", "login_hint",
                     "max_age", "nonce", "domain_hint"]),
    st.text(max_size=80)))
def test_fuzzed_authorize_requests_never_500(devstack, params):
    response = requests.get(authorize_url(devstack, **params), allow_redirects=False,
                            timeout=10)
    assert response.status_code in (200, 302, 400)
    if response.status_code == 302:  # without a signed-in browser, only an error goes back
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert "error" in query and "code" not in query
