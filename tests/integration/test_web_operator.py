"""Operator sign-in in `entra` mode against devstack's Entra: MSAL auth code flow against the
operator tenant, allowed by membership of the operators' group."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from broker.service import Broker
from consent_web import create_app
from devstack import seed
from tests.support.broker import RecordingNotifier, settings_for
from tests.support.browserless import complete_sign_in

CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def entra_site(devstack, tmp_path, **overrides):
    values = dict(
        operator_auth="entra", operator_tenant_id=seed.CPV_TENANT_ID,
        operator_client_id=seed.OPERATOR_APP_ID, operator_client_secret=seed.OPERATOR_APP_SECRET,
        operator_group_id=seed.OPERATOR_GROUP_ID,
    )
    settings = settings_for(devstack, tmp_path, **{**values, **overrides})
    app = create_app({"BROKER": Broker(settings, notifier=RecordingNotifier()),
                      "TESTING": True})
    return app.test_client()


def sign_in(client, user: str, *, next_path: str = "/"):
    login = client.get(f"/auth/login?next={next_path}")
    assert login.status_code == 200 and "Sign in with Microsoft" in login.text
    started = client.post("/auth/login", data={"csrf_token": CSRF.search(login.text).group(1)})
    assert started.status_code == 303
    auth_url = started.headers["Location"]
    query = parse_qs(urlsplit(auth_url).query)
    assert urlsplit(auth_url).path.startswith(f"/{seed.CPV_TENANT_ID}/")
    assert query["redirect_uri"] == ["http://localhost:47400/auth/callback"]
    redirect = urlsplit(complete_sign_in(auth_url, user))
    return client.get(f"{redirect.path}?{redirect.query}")


def test_operator_in_the_group_signs_in_and_lands_where_they_asked(devstack, tmp_path):
    client = entra_site(devstack, tmp_path)
    assert client.get("/?env=production").status_code == 302
    response = sign_in(client, seed.OPERATOR_UPN, next_path="/?env=production")
    assert response.status_code == 302 and response.headers["Location"] == "/?env=production"
    page = client.get("/?env=production")
    assert page.status_code == 200 and seed.OPERATOR_UPN in page.text
    cookie = client.get_cookie("broker").value
    assert seed.OPERATOR_APP_SECRET not in cookie


def test_account_outside_the_operators_group_is_refused(devstack, tmp_path):
    client = entra_site(devstack, tmp_path,
                        operator_group_id="00000000-0000-4000-8000-000000000000")
    response = sign_in(client, seed.OPERATOR_UPN)
    assert response.status_code == 403
    assert "not in the operators&#39; group or role" in response.text
    assert client.get("/").status_code == 302


def test_replayed_operator_callback_is_refused(devstack, tmp_path):
    client = entra_site(devstack, tmp_path)
    login = client.get("/auth/login")
    started = client.post("/auth/login", data={"csrf_token": CSRF.search(login.text).group(1)})
    redirect = urlsplit(complete_sign_in(started.headers["Location"], seed.OPERATOR_UPN))
    assert client.get(f"{redirect.path}?{redirect.query}").status_code == 302
    assert client.get(f"{redirect.path}?{redirect.query}").status_code == 400
