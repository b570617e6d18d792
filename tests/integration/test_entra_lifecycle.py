"""Time, revocation, reset, faults and restarts, on a private devstack (they change its state)."""

from __future__ import annotations

import base64
import json

import msal
import pytest
import requests

from devstack import seed
from devstack.entra import world
from devstack.entra.directory import DirectoryError
from tests.support.browserless import sign_in
from tests.support.devstack import environment, running_devstack

CALLBACK = "http://localhost:8765/consent/callback"


NORTHWIND_APP = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
NORTHWIND_AGENTS = "11111111-2222-4333-8444-555555555555"
DIRECTORY = {
    "tenants": [{"domain": "northwind.example", "name": "Northwind Traders",
                 "admin_agents_group": NORTHWIND_AGENTS}],
    "users": [{"upn": "ann@northwind.example", "name": "Ann", "admin_agent": True,
               "roles": ["Global Administrator"]}],
    "apps": [{"app_id": NORTHWIND_APP, "name": "Northwind Integration",
              "tenant": "northwind.example", "redirect_uris": ["https://nw.example/cb"],
              "secrets": [{"value": "nw-secret", "expires": "2099-01-01"}]},
             {"app_id": seed.CPV_APP_ID,
              "redirect_uris": ["https://broker.example/consent/callback"]}],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("entra-lifecycle")
    (state_dir / "directory.json").write_text(json.dumps(DIRECTORY))
    with running_devstack(state_dir) as running, environment(running.env):
        yield running


@pytest.fixture(autouse=True)
def fresh(stack):
    stack.reset()  # clock, faults, tokens, consent and sessions back to the seed


def cpv_app(stack) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        seed.CPV_APP_ID, client_credential=stack.env["BROKER_CPV_CLIENT_SECRET"],
        authority=f"{stack.authority}/organizations", instance_discovery=False)


def consented(app, user: str = seed.PARTNER_ADMIN_UPN) -> dict:
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE], redirect_uri=CALLBACK,
                                       response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, sign_in(flow["auth_uri"], user).params)
    assert "refresh_token" in result, result
    return result


def refresh(app, token: str) -> dict:
    return app.acquire_token_by_refresh_token(token, [seed.PARTNER_CENTER_SCOPE])


def test_refresh_token_unused_for_90_days_is_700082(stack):
    app = cpv_app(stack)
    first = consented(app)["refresh_token"]
    stack.advance_days(89)
    second = refresh(app, first)  # used on day 89: a new token, and day 89 is its last use
    assert "access_token" in second, second
    stack.advance_days(89)
    assert "access_token" in refresh(app, first)  # last used 89 days ago: still alive
    stack.advance_days(91)
    for token in (first, second["refresh_token"]):
        result = refresh(app, token)
        assert result["error"] == "invalid_grant"
        assert result["error_codes"] == [700082]
        assert result["error_description"].startswith(
            "AADSTS700082: The refresh token has expired due to inactivity. The token was "
            "issued on ")
        assert "and was inactive for 90.00:00:00." in result["error_description"]


def test_revoked_user_is_50173_and_can_sign_in_again(stack):
    app = cpv_app(stack)
    token = consented(app)["refresh_token"]
    assert stack.revoke(seed.PARTNER_ADMIN_UPN)["revoked_refresh_tokens"] == 1
    result = refresh(app, token)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50173]
    assert "TokensValidFrom" in result["error_description"]
    # the consent stands; signing in again yields a working token
    fresh_token = consented(app)["refresh_token"]
    assert "access_token" in refresh(app, fresh_token)


def test_revoking_an_unknown_user_revokes_nothing(stack):
    assert stack.revoke("ghost@contoso.example")["revoked_refresh_tokens"] == 0


def test_code_expires_after_ten_emulated_minutes_70008(stack):
    app = cpv_app(stack)
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE], redirect_uri=CALLBACK,
                                       response_mode="form_post")
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    stack.advance_days(11 / 1440)
    result = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [70008]


def test_reset_forgets_refresh_tokens_and_consent(stack):
    app = cpv_app(stack)
    token = consented(app)["refresh_token"]
    stack.reset()
    result = refresh(app, token)
    assert result["error"] == "invalid_grant"
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE], redirect_uri=CALLBACK,
                                       response_mode="form_post")
    declined = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN, consent=False)
    assert declined.error == "access_denied"  # the consent page is back


@pytest.mark.parametrize("status", [429, 503])
def test_faults_answer_like_entra_with_retry_after(stack, status):
    stack.faults("entra", status, 1)
    response = requests.post(f"{stack.authority}/organizations/oauth2/v2.0/token", timeout=10,
                             data={"grant_type": "refresh_token", "client_id": seed.CPV_APP_ID})
    assert response.status_code == status
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert "access_token" not in body


def test_directory_json_adds_tenants_users_apps_and_redirect_uris(stack):
    app = msal.ConfidentialClientApplication(
        NORTHWIND_APP, client_credential="nw-secret",
        authority=f"{stack.authority}/northwind.example", instance_discovery=False)
    flow = app.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE],
                                       redirect_uri="https://nw.example/cb",
                                       response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], "ann@northwind.example").params)
    access = json.loads(base64.urlsafe_b64decode(result["access_token"].split(".")[1] + "=="))
    assert access["upn"] == "ann@northwind.example"
    assert access["groups"] == [NORTHWIND_AGENTS]
    cpv = cpv_app(stack)
    flow = cpv.initiate_auth_code_flow([seed.PARTNER_CENTER_SCOPE],
                                       redirect_uri="https://broker.example/consent/callback",
                                       response_mode="form_post")
    response = sign_in(flow["auth_uri"], seed.PARTNER_ADMIN_UPN)
    assert response.url == "https://broker.example/consent/callback"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"users": [{"upn": "bob@unknown.example"}]}', "unknown tenant 'unknown.example'"),
    ('{"apps": [{"app_id": "nope"}]}', "'app_id' must be a GUID"),
    ('{"apps": [{"app_id": "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3e", '
     '"redirect_uris": ["http://app.example/cb"]}]}', "http is only allowed for localhost"),
    ('{"colours": []}', "unknown keys"),
])
def test_malformed_directory_json_names_the_problem(tmp_path, content, message):
    (tmp_path / "directory.json").write_text(content)
    with pytest.raises(DirectoryError, match=message):
        world.load(tmp_path, "secret")


def test_refresh_tokens_survive_a_restart_and_are_stored_hashed(stack):
    """Last in this module: it stops the module's devstack and starts it again."""
    token = consented(cpv_app(stack))["refresh_token"]
    stack.stop()
    stored = b"".join(p.read_bytes() for p in stack.state_dir.glob("entra.db*"))  # and WAL
    assert stored and token.encode() not in stored
    assert token[:40].encode() not in stored
    with running_devstack(stack.state_dir) as again, environment(again.env):
        result = refresh(cpv_app(again), token)
        assert "access_token" in result, result
