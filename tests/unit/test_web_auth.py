"""Operator sign-in in each mode, and the gate in front of every operator page."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest

from consent_web.operators import (
    LOCAL_LINK_LIFETIME,
    OPERATOR_LIFETIME,
    SESSION_KEY,
    LocalSignIn,
    safe_next,
)
from tests.unit.web_fakes import Web

pytestmark = pytest.mark.seed("contoso")

OPERATOR_PAGES = [
    ("GET", "/"),
    ("GET", "/?env=production"),
    ("GET", "/add"),
    ("POST", "/add"),
    ("GET", "/credentials/contoso"),
    ("GET", "/credentials/contoso/edit"),
    ("POST", "/credentials/contoso/edit"),
    ("POST", "/credentials/contoso/consent"),
    ("POST", "/credentials/contoso/generate-token"),
    ("POST", "/credentials/contoso/validate"),
    ("POST", "/credentials/contoso/rotate"),
    ("GET", "/credentials/contoso/remove"),
    ("POST", "/credentials/contoso/remove"),
    ("GET", "/credentials/contoso/invite"),
    ("POST", "/credentials/contoso/invite"),
]


@pytest.mark.parametrize(("method", "path"), OPERATOR_PAGES)
def test_operator_pages_need_a_signed_in_operator(site, method, path):
    if method == "GET":
        response = site.client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login?next=")
    else:
        response = site.post(path)
        assert response.status_code == 401
        assert "Sign in" in response.text
    assert [c for c in site.broker.calls if c[0] != "get_credential"] == []


@pytest.mark.parametrize("path", ["/healthz", "/auth/login", "/invite/whatever",
                                  "/consent/callback", "/consent/done"])
def test_public_pages_need_no_operator(site, path):
    response = site.client.get(path)
    assert response.status_code != 302 or "/auth/login" not in response.headers["Location"]
    assert response.status_code < 500


def test_printed_link_signs_in_once_and_drops_the_token_from_the_address_bar(site):
    token = site.app.extensions["local_sign_in"].issue()
    first = site.client.get(f"/auth/local?token={token}")
    assert first.status_code == 302 and first.headers["Location"] == "/"
    assert site.client.get("/").status_code == 200

    other = Web(site.broker)
    replay = other.client.get(f"/auth/local?token={token}")
    assert replay.status_code == 403
    assert "cannot be used" in replay.text
    assert other.client.get("/").status_code == 302


@pytest.mark.parametrize("token", ["", "x", "not-a-real-token-but-long-enough", "a" * 500])
def test_wrong_sign_in_links_are_refused(site, token):
    response = site.client.get(f"/auth/local?token={token}")
    assert response.status_code == 403
    assert site.client.get("/").status_code == 302


def test_sign_in_returns_to_the_page_asked_for(site):
    asked = site.client.get("/credentials/contoso")
    assert asked.headers["Location"] == "/auth/login?next=/credentials/contoso"
    site.client.get(asked.headers["Location"])
    token = site.app.extensions["local_sign_in"].issue()
    assert site.client.get(f"/auth/local?token={token}").headers["Location"] == \
        "/credentials/contoso"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example",
                                    "javascript:alert(1)", "evil", "/ok\r\nSet-Cookie: x=1", None,
                                    "/" + "a" * 3000])
def test_next_never_leaves_the_site(target):
    assert safe_next(target) == "/"


def test_a_new_link_can_be_printed_on_the_console(site):
    printed = []
    site.app.extensions["local_sign_in"].announce = printed.append
    response = site.post("/auth/local/link")
    assert response.status_code == 303
    assert len(printed) == 1 and printed[0].startswith("http://localhost:47400/auth/local?token=")
    assert "printed on the console" in site.client.get("/auth/login").text
    assert site.client.get(printed[0].removeprefix("http://localhost:47400")).status_code == 302
    assert site.client.get("/").status_code == 200


def test_operator_session_ends_after_its_lifetime(site, monkeypatch):
    site.sign_in()
    assert site.client.get("/").status_code == 200
    later = time.time() + OPERATOR_LIFETIME.total_seconds() + 60
    monkeypatch.setattr(time, "time", lambda: later)
    assert site.client.get("/").status_code == 302


def test_a_session_signed_in_over_eight_hours_ago_ends_even_while_its_cookie_is_fresh(site):
    """The sign-in time inside the session is the guard; the cookie's own age is not enough
    (a cookie re-issued on every response never grows old)."""
    assert timedelta(hours=8) == OPERATOR_LIFETIME
    site.sign_in()
    with site.client.session_transaction() as session:
        signed_in = dict(session[SESSION_KEY])
        signed_in["at"] -= int(OPERATOR_LIFETIME.total_seconds()) + 60
        session[SESSION_KEY] = signed_in
    assert site.client.get("/").status_code == 302


def test_sign_out_ends_the_session(site):
    site.sign_in()
    response = site.post("/auth/logout")
    assert response.status_code == 200 and "Signed out" in response.text
    assert site.client.get("/").status_code == 302


def test_a_cookie_replayed_after_sign_out_is_refused(site):
    site.sign_in()
    assert site.client.get("/").status_code == 200
    stolen = site.client.get_cookie("broker").value
    site.post("/auth/logout")
    # a copy of the signed-in cookie, in another browser, and in a site restarted since
    for client in (site.client, Web(site.broker).client):
        client.set_cookie("broker", stolen)
        response = client.get("/")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login")


def test_a_session_without_a_session_id_is_refused(site):
    """A signed cookie without a session id (as every one before sign-out was recorded) could
    never be signed out, so it is no session."""
    from flask.sessions import SecureCookieSessionInterface

    serializer = SecureCookieSessionInterface().get_signing_serializer(site.app)
    legacy = serializer.dumps({SESSION_KEY: {"name": "x", "via": "local",
                                             "at": int(time.time())}})
    site.client.set_cookie("broker", legacy)
    assert site.client.get("/").status_code == 302


def test_sign_in_links_expire():
    clock = [1000.0]
    signer = LocalSignIn(lambda link: None, clock=lambda: clock[0])
    fresh, stale = signer.issue(), signer.issue()
    clock[0] += LOCAL_LINK_LIFETIME.total_seconds() - 1
    assert signer.redeem(fresh)
    clock[0] += 2
    assert not signer.redeem(stale)


def test_asking_for_new_links_is_rate_limited(site):
    printed = []
    site.app.extensions["local_sign_in"].announce = printed.append
    statuses = [site.post("/auth/local/link").status_code for _ in range(4)]
    assert statuses == [303, 303, 303, 429]
    assert len(printed) == 3  # the refused request printed nothing
    refused = site.post("/auth/local/link")
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
    assert "Too many sign-in links" in refused.text


def test_app_service_headers_are_ignored_outside_easyauth_mode(site):
    headers = {"X-MS-CLIENT-PRINCIPAL-NAME": "mallory@evil.example",
               "X-MS-CLIENT-PRINCIPAL": _principal([])}
    assert site.client.get("/", headers=headers).status_code == 302


def _principal(claims: list[tuple[str, str]]) -> str:
    body = {"auth_typ": "aad", "claims": [{"typ": t, "val": v} for t, v in claims],
            "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()


# what App Service sets when its authentication, with Microsoft Entra ID, is switched on
APP_SERVICE_AUTH = {"WEBSITE_AUTH_ENABLED": "True",
                    "WEBSITE_AUTH_DEFAULT_PROVIDER": "AzureActiveDirectory"}


def easyauth(environ: dict[str, str] | None = None, **settings) -> Web:
    settings.setdefault("operator_group_id", "ops-group")
    return Web(operator_auth="easyauth",
               config={"APP_SERVICE_AUTH_ENVIRON": APP_SERVICE_AUTH if environ is None
                       else environ}, **settings)


OPERATOR_HEADERS = {"X-MS-CLIENT-PRINCIPAL-NAME": "ops@fabrikam.example",
                    "X-MS-CLIENT-PRINCIPAL": _principal([("groups", "ops-group")])}


def test_easyauth_mode_trusts_app_service_headers():
    site = easyauth()
    response = site.client.get("/", headers=OPERATOR_HEADERS)
    assert response.status_code == 200
    assert "ops@fabrikam.example" in response.text
    assert site.client.get("/").status_code == 302  # no headers: not signed in


@pytest.mark.parametrize("environ", [
    {},  # another host, or App Service with authentication switched off
    {"WEBSITE_AUTH_ENABLED": "False", "WEBSITE_AUTH_DEFAULT_PROVIDER": "AzureActiveDirectory"},
    {"WEBSITE_AUTH_ENABLED": "True", "WEBSITE_AUTH_DEFAULT_PROVIDER": "Google"},
])
def test_easyauth_without_app_service_authentication_refuses_spoofed_headers(environ):
    site = easyauth(environ)
    site.broker.seed("contoso")
    for path in ("/", "/credentials/contoso", "/auth/login"):
        response = site.client.get(path, headers=OPERATOR_HEADERS)
        assert response.status_code == 503, path
        assert "Almost there" in response.text and "WEBSITE_AUTH" in response.text
        assert "ops@fabrikam.example" not in response.text
    assert [c for c in site.broker.calls if c[0] != "get_credential"] == []


def test_easyauth_without_a_group_or_role_lets_nobody_in():
    site = easyauth(operator_group_id=None)
    assert site.client.get("/", headers=OPERATOR_HEADERS).status_code == 403


def test_easyauth_without_a_group_or_role_does_not_start(monkeypatch):
    from broker.errors import SettingsError
    from consent_web import site as site_module

    monkeypatch.setenv("BROKER_VAULT_URL", "https://unit.vault.azure.net/")
    monkeypatch.setenv("BROKER_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("BROKER_OPERATOR_AUTH", "easyauth")
    for name in ("BROKER_OPERATOR_GROUP_ID", "BROKER_OPERATOR_ROLE", "BROKER_CONFIG_VAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    state = site_module.load(None)
    assert state.settings is None and isinstance(state.error, SettingsError)
    assert "BROKER_OPERATOR_GROUP_ID or BROKER_OPERATOR_ROLE" in str(state.error)
    monkeypatch.setenv("BROKER_OPERATOR_ROLE", "Broker.Operator")
    assert site_module.load(None).settings.operator_auth == "easyauth"


def test_easyauth_sign_in_goes_to_app_service_login():
    site = easyauth()
    response = site.client.get("/auth/login?next=/credentials/x")
    assert response.status_code == 302
    assert response.headers["Location"] == \
        "/.auth/login/aad?post_login_redirect_uri=/credentials/x"


@pytest.mark.parametrize(("claims", "status"), [
    ([("groups", "ops-group")], 200),
    ([("http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "Broker.Operator")], 200),
    ([("roles", "Broker.Operator")], 200),
    ([("groups", "someone-else")], 403),
    ([], 403),
])
def test_easyauth_checks_the_operator_group_or_role_when_configured(claims, status):
    site = easyauth(operator_role="Broker.Operator")
    response = site.client.get("/", headers={"X-MS-CLIENT-PRINCIPAL-NAME": "ops@fabrikam.example",
                                            "X-MS-CLIENT-PRINCIPAL": _principal(claims)})
    assert response.status_code == status


@pytest.mark.parametrize("header", ["%%%", base64.b64encode(b"not json").decode(),
                                    base64.b64encode(b'{"claims": 5}').decode(), ""])
def test_easyauth_malformed_principal_is_a_403_not_a_500(header):
    site = easyauth()
    response = site.client.get("/", headers={"X-MS-CLIENT-PRINCIPAL-NAME": "ops@fabrikam.example",
                                            "X-MS-CLIENT-PRINCIPAL": header})
    assert response.status_code == 403


def test_local_sign_in_routes_do_not_exist_in_other_modes():
    site = easyauth()
    token = site.app.extensions["local_sign_in"].issue()
    assert site.client.get(f"/auth/local?token={token}").status_code == 404


def test_entra_mode_without_its_settings_explains_what_to_set():
    site = Web(operator_auth="entra", operator_tenant_id="t", operator_client_id="c",
              operator_client_secret="s")
    response = site.client.get("/auth/login")
    assert response.status_code == 503
    assert "BROKER_OPERATOR_GROUP_ID or BROKER_OPERATOR_ROLE" in response.text


def test_entra_mode_offers_microsoft_sign_in():
    site = Web(operator_auth="entra", operator_tenant_id="t", operator_client_id="c",
              operator_client_secret="s", operator_group_id="g")
    page = site.client.get("/auth/login")
    assert page.status_code == 200 and "Sign in with Microsoft" in page.text


@pytest.mark.parametrize("query", ["", "?state=x&code=y", "?error=access_denied"])
def test_entra_callback_without_a_started_sign_in_is_a_400(query):
    site = Web(operator_auth="entra", operator_tenant_id="t", operator_client_id="c",
              operator_client_secret="s", operator_group_id="g")
    response = site.client.get(f"/auth/callback{query}")
    assert response.status_code == 400
    assert "Sign in again" in response.text
