"""Consent by invitation: the operator's link page and the partner admin's landing page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.unit.web_fakes import CPV_ID, Web, assert_no_secrets

pytestmark = pytest.mark.seed("contoso", active=False)


def create_link(web: Web, send: str = "link", email: str = "") -> str:
    page = web.post("/credentials/contoso/invite", {"send": send, "email": email})
    assert page.status_code == 200
    match = re.search(r'data-copy="(http://localhost:47400/invite/[^"]+)"', page.text)
    assert match
    return match.group(1).removeprefix("http://localhost:47400")


def test_creating_a_link_shows_it_once_with_a_copy_button_and_expiry(web):
    page = web.post("/credentials/contoso/invite", {"send": "link"})
    assert "Consent link ready" in page.text and "works once and expires" in page.text
    assert "/invite/" not in web.session_text()  # never flashed into the cookie
    assert "/invite/" not in web.client.get("/credentials/contoso").text
    assert web.broker.notifier.events == []


def test_the_link_can_be_emailed_to_the_partner_admins_own_address(web):
    path = create_link(web, send="email", email="admin@contoso.example")
    assert web.broker.notifier.events == []  # not to the operators' notification channels
    ((event, to),) = web.broker.notifier.emails
    assert to == ["admin@contoso.example"]
    assert event.kind == "consent-invite" and event.credential_id == "contoso"
    assert event.invite_url == "http://localhost:47400" + path
    assert "Partner Token Broker asks an administrator" in event.message
    assert "Global Administrator and Admin Agent" in event.action


@pytest.mark.parametrize("address", ["", "not-an-address", "a@b", "x@y.com, z@w.com"])
def test_an_invalid_address_is_refused_and_no_link_is_made(web, address):
    page = web.post("/credentials/contoso/invite", {"send": "email", "email": address})
    assert page.status_code == 400
    assert "Enter the partner admin&#39;s email address" in page.text
    assert "/invite/" not in page.text and web.broker.notifier.emails == []


def test_email_is_offered_only_when_a_mail_server_is_configured(web):
    web.broker.notifier.smtp_url = None
    page = web.client.get("/credentials/contoso/invite").text
    assert "disabled" in page and "BROKER_SMTP_URL" in page
    web.post("/credentials/contoso/invite", {"send": "email", "email": "admin@contoso.example"})
    assert web.broker.notifier.emails == []


def test_landing_page_explains_the_consent_to_the_partner_admin(web):
    path = create_link(web)
    visitor = Web(web.broker)
    page = visitor.client.get(path)
    assert page.status_code == 200
    text = page.text
    # who asks, by name (BROKER_DISPLAY_NAME), never a host name
    assert "From <strong>Partner Token Broker</strong>" in text and "localhost" not in text
    assert "contoso.example" in text and "Microsoft CSP (NCE)" in text
    assert "user_impersonation" in text and "offline_access" in text
    assert "Global Administrator" in text and "Admin Agent" in text
    assert "multi-factor authentication" in text
    assert "Consent on behalf of your organization" in text
    assert CPV_ID in text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Sign out" not in text  # no operator chrome for the visitor
    assert_no_secrets(visitor, page)


def test_the_landing_button_starts_consent_bound_to_the_invite(web):
    path = create_link(web)
    visitor = Web(web.broker)
    token = visitor.csrf_token(path)
    response = visitor.client.post(path, data={"csrf_token": token})
    assert response.status_code == 303
    state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    begin = [c for c in web.broker.calls if c[0] == "begin_consent"][-1]
    assert begin[1] == "contoso" and begin[4] == path.removeprefix("/invite/")

    finished = visitor.client.get(f"/consent/callback?code=abc&state={state}")
    assert finished.status_code == 303
    done = visitor.client.get("/consent/done")
    assert "Consent granted. Thank you." in done.text
    assert web.broker.versions("contoso")[0].version not in done.text  # no internal ids
    assert "You can close this window" in done.text
    assert "unit.vault.azure.net" not in done.text  # the vault URL is for operators only
    assert visitor.client.get(path).status_code == 404  # used: single use


@pytest.mark.parametrize("token", ["forged", "a" * 5000, "%00", "..", "eyJjIjoiY29udG9zbyJ9.x"])
def test_forged_or_oversized_links_get_a_clear_404(web, token):
    page = Web(web.broker).client.get(f"/invite/{token}")
    assert page.status_code == 404
    assert "This consent link is not valid" in page.text
    assert "Ask the person who sent it for a new link" in page.text
    assert "broker " not in page.text.split("<main")[1]  # no CLI commands for a partner admin


def test_links_with_slashes_are_plain_404s(web):
    assert Web(web.broker).client.get("/invite/..%2F..%2Fetc").status_code == 404


def test_a_replaced_link_no_longer_works(web):
    first = create_link(web)
    create_link(web)
    assert Web(web.broker).client.get(first).status_code == 404


def test_starting_from_a_dead_link_is_refused_without_calling_the_authority(web):
    visitor = Web(web.broker)
    token = visitor.csrf_token()
    response = visitor.client.post("/invite/forged", data={"csrf_token": token})
    assert response.status_code == 404
    assert not [c for c in web.broker.calls if c[0] == "begin_consent"]


def test_landing_post_needs_the_csrf_token(web):
    path = create_link(web)
    response = Web(web.broker).client.post(path)
    assert response.status_code == 400
