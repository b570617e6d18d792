"""The site as a whole: factory, health, setup page, headers, cookies, CSRF and error pages."""

from __future__ import annotations

import pytest

from broker.errors import TransientFailure
from consent_web import create_app
from tests.unit.web_fakes import Web, assert_no_secrets


def test_healthz_answers_without_sign_in_and_reveals_nothing(site):
    response = site.client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "configured": True}
    assert_no_secrets(site, response)


def test_missing_settings_render_the_almost_there_page_instead_of_crashing(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("BROKER_VAULT_URL", raising=False)
    app = create_app({"TESTING": True})
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 503
    assert "Almost there" in page.text
    assert "BROKER_VAULT_URL" in page.text
    assert client.get("/healthz").json == {"status": "ok", "configured": False}
    with client.get("/static/app.css") as css:
        assert css.status_code == 200


def test_invalid_setting_is_named_on_the_setup_page(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_VAULT_URL", "https://v.vault.azure.net")
    monkeypatch.setenv("BROKER_OPERATOR_AUTH", "password")
    page = create_app({"TESTING": True}).test_client().get("/invite/x")
    assert page.status_code == 503
    assert "BROKER_OPERATOR_AUTH" in page.text


def test_every_page_sends_the_security_headers(site):
    site.sign_in()
    for path in ("/", "/auth/login", "/healthz", "/invite/nope", "/no-such-page"):
        headers = site.client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in headers  # plain http in local dev


@pytest.mark.parametrize("path", ["/invite/some-token", "/consent/callback?state=x",
                                  "/consent/done", "/auth/login"])
def test_consent_and_invite_pages_send_no_referrer(site, path):
    assert site.client.get(path).headers["Referrer-Policy"] == "no-referrer"


def test_form_action_allows_the_authority_for_the_post_redirect_get(site):
    csp = site.client.get("/healthz").headers["Content-Security-Policy"]
    assert "form-action 'self' https://login.example.test" in csp


def test_pages_use_no_inline_script_or_style(site):
    site.broker.seed("contoso")
    site.sign_in()
    for path in ("/", "/add", "/credentials/contoso", "/credentials/contoso/invite"):
        text = site.client.get(path).text
        assert "<script>" not in text and "onclick" not in text and "style=" not in text


def test_behind_app_service_proxy_requests_are_https_and_get_hsts():
    site = Web(public_url="https://broker.example.com")
    response = site.client.get("/healthz", headers={"X-Forwarded-Proto": "https",
                                                   "X-Forwarded-Host": "broker.example.com"})
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_session_cookie_is_httponly_lax_and_secure_outside_local_dev():
    local = Web()
    local.sign_in()
    cookie = local.client.get_cookie("broker")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure

    deployed = Web(public_url="https://broker.example.com")
    token = deployed.app.extensions["local_sign_in"].issue()
    response = deployed.client.get(f"/auth/local?token={token}",
                                   headers={"X-Forwarded-Proto": "https"})
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith("__Host-broker=")
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_post_without_csrf_token_is_refused_with_a_page_not_a_500(site):
    site.sign_in()
    response = site.client.post("/add", data={"id": "x"})
    assert response.status_code == 400
    assert "security token" in response.text
    assert site.broker.calls == []


def test_post_from_another_site_is_refused(site):
    site.sign_in()
    token = site.csrf_token()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = site.client.post("/add", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 403
        assert "another site" in response.text


def test_same_origin_post_with_token_passes_the_origin_check(site):
    site.sign_in()
    response = site.post("/add", {"id": ""}, headers={"Origin": "http://localhost",
                                                     "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 400  # the form's own validation, not the origin check
    assert "Nothing was saved" in response.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no-such-page", 404),
    ("GET", "/credentials/UPPER", 404),
    ("GET", "/credentials/" + "a" * 80, 404),
    ("GET", "/credentials/-leading-dash", 404),
    ("GET", "/credentials/x/../../etc/passwd", 404),
    ("PUT", "/", 405),
    ("DELETE", "/credentials/contoso", 405),
    ("GET", "/credentials/contoso/validate", 405),
    ("GET", "/?env=staging", 400),
    ("GET", "/?env=" + "x" * 5000, 400),
])
def test_bad_requests_get_a_friendly_4xx_page(site, method, path, status):
    site.sign_in()
    response = site.client.open(path, method=method)
    assert response.status_code == status
    assert "<h1>" in response.text and "Traceback" not in response.text


def test_a_too_large_form_is_a_413_page(site):
    site.sign_in()
    response = site.post("/add", {"product": "x" * 100_000})
    assert response.status_code == 413
    assert "Too much data" in response.text


def test_azure_being_busy_is_a_503_page_with_retry_after(site):
    site.sign_in()
    site.broker.fail["list_credentials"] = TransientFailure("Key Vault is throttling.",
                                                           retry_after=12)
    response = site.client.get("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "12"
    assert "Key Vault is throttling." in response.text


def test_an_unexpected_error_is_a_500_page_without_a_traceback(site):
    site.sign_in()
    site.broker.fail["list_credentials"] = RuntimeError("boom")
    response = site.client.get("/")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "boom" not in response.text and "Traceback" not in response.text


@pytest.mark.parametrize("name", ["app.css", "app.js", "favicon.svg"])
def test_static_files_are_served_without_sign_in_and_may_be_cached(site, name):
    with site.client.get(f"/static/{name}") as response:
        assert response.status_code == 200
        assert response.headers.get("Cache-Control") != "no-store"


GARBAGE = ["", " ", "x" * 5000, "\x00", "<script>alert(1)</script>", "../../etc/passwd", "%",
           "'; DROP TABLE x; --", "é🙂", "\r\nLocation: https://evil.example", "{{7*7}}",
           "-1", "2030-02-30"]


def _paths(app) -> list[tuple[str, str]]:
    """Every route of the site with its placeholders filled, for every method it accepts."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<slug:credential_id>", "contoso").replace("<token>", "tok")
        found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


@pytest.mark.parametrize("signed_in", [True, False])
def test_no_route_answers_garbage_with_a_500(signed_in):
    site = Web()
    site.broker.seed("contoso")
    if signed_in:
        site.sign_in()
    token = site.csrf_token()
    fields = ("id", "environment", "product", "marketplace", "tenant_id", "client_id",
              "client_secret", "secret_expires_on", "next_step", "send", "token", "next",
              "state", "code", "error", "env")
    for method, path in _paths(site.app):
        for value in GARBAGE:
            data = dict.fromkeys(fields, value)
            query = {name: value for name in ("env", "next", "state", "code", "error", "token")}
            if method == "GET":
                response = site.client.get(path, query_string=query)
            else:
                response = site.client.post(path, data={**data, "csrf_token": token},
                                           query_string=query)
            assert response.status_code < 500, (method, path, value, response.status_code)
            assert "Traceback" not in response.text
