"""Refresh tokens as Entra keeps them: rotation, multi-resource use, consent and MFA rules."""

from __future__ import annotations

import base64
import json

import msal
import pytest
import requests

from devstack import seed
from tests.support.browserless import SignInError, sign_in

CALLBACK = "http://localhost:8765/consent/callback"


def claims(jwt: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))


def partner_app(devstack) -> msal.ConfidentialClientApplication:
    """The partner's own app: its consent in contoso is separate from the CPV app's."""
    return msal.ConfidentialClientApplication(
        seed.PARTNER_APP_ID, client_credential=seed.PARTNER_APP_SECRET,
        authority=f"{devstack.authority}/{seed.PARTNER_TENANT_ID}", instance_discovery=False)


def cpv_app(devstack) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=devstack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{devstack.authority}/organizations", instance_discovery=False)


def consent(app, user: str, scopes, session=None, **kwargs) -> dict:
    """Sign in and consent to `scopes`; the code is redeemed for the first one's resource
    (a token is for one resource: redeeming for two is AADSTS28000, as in Entra)."""
    flow = app.initiate_auth_code_flow(list(scopes), redirect_uri=CALLBACK,
                                       response_mode="form_post")
    response = sign_in(flow["auth_uri"], user, session=session, **kwargs)
    result = app.acquire_token_by_auth_code_flow(flow, response.params, scopes=[scopes[0]])
    assert "error" not in result, result
    return result


@pytest.fixture(scope="module")
def admin_tokens(devstack) -> dict:
    return consent(cpv_app(devstack), seed.PARTNER_ADMIN_UPN, [seed.PARTNER_CENTER_SCOPE])


def test_refresh_token_is_opaque_and_shaped_like_entras(admin_tokens):
    token = admin_tokens["refresh_token"]
    assert token.startswith("0.A")
    assert len(token) > 500
    assert token.count(".") == 2 and not token.startswith("eyJ")


def test_each_redemption_returns_a_new_refresh_token_and_the_old_one_stays_valid(
        devstack, admin_tokens):
    app = cpv_app(devstack)
    first = admin_tokens["refresh_token"]
    second = app.acquire_token_by_refresh_token(first, [seed.PARTNER_CENTER_SCOPE])
    assert second["refresh_token"] not in (first, None)
    third = app.acquire_token_by_refresh_token(second["refresh_token"],
                                               [seed.PARTNER_CENTER_SCOPE])
    assert third["refresh_token"] not in (first, second["refresh_token"])
    # the first one was used, yet stays valid until its own expiry
    again = app.acquire_token_by_refresh_token(first, [seed.PARTNER_CENTER_SCOPE])
    assert "access_token" in again, again
    assert claims(again["access_token"])["aud"] == seed.PARTNER_CENTER_RESOURCE


def test_rotated_refresh_tokens_keep_the_mfa_of_the_original_sign_in(devstack, admin_tokens):
    app = cpv_app(devstack)
    token = admin_tokens["refresh_token"]
    for _ in range(3):
        result = app.acquire_token_by_refresh_token(token, [seed.PARTNER_CENTER_SCOPE])
        token = result["refresh_token"]
    assert claims(result["access_token"])["amr"] == ["pwd", "mfa"]


def test_refresh_token_redeems_for_another_consented_resource(devstack):
    app = partner_app(devstack)
    tokens = consent(app, seed.PARTNER_ADMIN_UPN,
                     [seed.PARTNER_CENTER_SCOPE, seed.GRAPH_USER_READ_SCOPE])
    graph = app.acquire_token_by_refresh_token(tokens["refresh_token"],
                                               [seed.GRAPH_USER_READ_SCOPE])
    assert "access_token" in graph, graph
    access = claims(graph["access_token"])
    assert access["aud"] == seed.GRAPH_RESOURCE
    assert access["scp"] == "User.Read"
    pc = app.acquire_token_by_refresh_token(graph["refresh_token"],
                                            [seed.PARTNER_CENTER_DEFAULT_SCOPE])
    assert claims(pc["access_token"])["aud"] == seed.PARTNER_CENTER_RESOURCE


def test_refresh_for_a_scope_the_tenant_never_consented_is_65001(devstack, admin_tokens):
    result = cpv_app(devstack).acquire_token_by_refresh_token(admin_tokens["refresh_token"],
                                                              [seed.ARM_SCOPE])
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [65001]
    assert result["suberror"] == "consent_required"
    assert result["error_description"].startswith(
        "AADSTS65001: The user or administrator has not consented to use the application with "
        f"ID '{seed.CPV_APP_ID}'")
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert result[key]
    assert "Trace ID: " in result["error_description"]


def test_user_without_an_mfa_method_is_50079_for_partner_center(devstack):
    # Conditional Access stops a user with no MFA method during sign-in, on the registration
    # interrupt ("More information required"), before any code reaches the client
    # (https://learn.microsoft.com/entra/identity/authentication/concept-registration-mfa-sspr-combined)
    app = cpv_app(devstack)
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE], redirect_uri=CALLBACK,
                                       response_mode="form_post")
    with pytest.raises(SignInError) as stopped:
        sign_in(flow["auth_uri"], seed.PARTNER_NOMFA_UPN)
    assert stopped.value.code == 50079
    assert "More information required" in stopped.value.html
    # a refresh token from a sign-in that needed no MFA, redeemed for Partner Center: 50079
    app = partner_app(devstack)
    scopes = [seed.GRAPH_USER_READ_SCOPE]
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=CALLBACK, response_mode="form_post")
    response = sign_in(flow["auth_uri"], seed.PARTNER_NOMFA_UPN)
    graph = app.acquire_token_by_auth_code_flow(flow, response.params,
                                                scopes=[seed.GRAPH_USER_READ_SCOPE])
    assert claims(graph["access_token"])["aud"] == seed.GRAPH_RESOURCE
    refreshed = app.acquire_token_by_refresh_token(graph["refresh_token"],
                                                   [seed.PARTNER_CENTER_SCOPE])
    assert refreshed["error"] == "interaction_required"
    assert refreshed["error_codes"] == [50079]


def test_session_without_mfa_is_50076_for_partner_center(devstack):
    app = partner_app(devstack)
    # the tenant consents to Partner Center and Graph (this sign-in does MFA) ...
    consent(app, seed.PARTNER_ADMIN_UPN, [seed.PARTNER_CENTER_SCOPE, seed.GRAPH_USER_READ_SCOPE])
    # ... then a fresh browser signs in for Graph only, which needs no MFA
    graph_only = consent(app, seed.PARTNER_ADMIN_UPN, [seed.GRAPH_USER_READ_SCOPE],
                         session=requests.Session())
    assert claims(graph_only["access_token"])["amr"] == ["pwd"]
    result = app.acquire_token_by_refresh_token(graph_only["refresh_token"],
                                                [seed.PARTNER_CENTER_SCOPE])
    assert result["error"] == "interaction_required"
    assert result["error_codes"] == [50076]
    assert result["error_description"].startswith(
        "AADSTS50076: Due to a configuration change made by your administrator")


def test_refresh_token_of_another_client_is_invalid_grant(devstack, admin_tokens):
    # issue 14 point 2, compared with the service: AADSTS700007, not 70000
    result = partner_app(devstack).acquire_token_by_refresh_token(
        admin_tokens["refresh_token"], [seed.PARTNER_CENTER_SCOPE])
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [700007]


def test_unknown_refresh_token_is_invalid_grant_9002313(devstack):
    result = cpv_app(devstack).acquire_token_by_refresh_token("0.AXYZ-not-a-real-token",
                                                              [seed.PARTNER_CENTER_SCOPE])
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [9002313]


def test_refresh_with_two_resources_at_once_is_invalid_scope(devstack, admin_tokens):
    result = cpv_app(devstack).acquire_token_by_refresh_token(
        admin_tokens["refresh_token"], [seed.PARTNER_CENTER_SCOPE, seed.GRAPH_USER_READ_SCOPE])
    assert result["error"] == "invalid_scope"
    assert result["error_codes"] == [28000]
