"""The sign-in pages render as plain, self-contained HTML forms under a strict CSP."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
import requests

from devstack import seed

CALLBACK = "http://localhost:8765/consent/callback"


class Document(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ids: dict[str, str] = {}
        self._stack: list[str | None] = []
        self.inline_scripts = 0
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attr = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attr))
        if tag == "script":
            self._in_script = True
        if tag not in ("input", "link", "meta", "img", "br"):
            self._stack.append(attr.get("id"))
            if attr.get("id"):
                self.ids.setdefault(attr["id"], "")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if self._stack and tag not in ("input", "link", "meta", "img", "br"):
            self._stack.pop()

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1
        for element_id in self._stack:
            if element_id:
                self.ids[element_id] += data

    def find(self, tag: str, **attrs) -> list[dict[str, str]]:
        return [a for t, a in self.tags
                if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def text(self, element_id: str) -> str:
        return " ".join(self.ids.get(element_id, "").split())


def authorize_url(devstack, **params) -> str:
    query = {"client_id": seed.CPV_APP_ID, "response_type": "code", "redirect_uri": CALLBACK,
             "scope": f"{seed.PARTNER_CENTER_SCOPE} openid offline_access", "state": "s",
             "prompt": "consent", **params}
    return f"{devstack.authority}/organizations/oauth2/v2.0/authorize?{urlencode(query)}"


def submit(browser, response, document: Document, **fields) -> requests.Response:
    [form] = document.find("form")
    data = {i["name"]: i.get("value", "") for i in document.find("input", type="hidden")}
    data.update(fields)
    return browser.post(urljoin(response.url, form["action"]), data=data, timeout=10,
                        allow_redirects=False)


def assert_self_contained(devstack, response: requests.Response, document: Document) -> None:
    """Strict CSP, no inline script or style, every asset served by the authority itself."""
    assert response.headers["Content-Type"].startswith("text/html")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert document.inline_scripts == 0
    assert not any("style" in attrs or any(k.startswith("on") for k in attrs)
                   for _, attrs in document.tags)
    for tag, attrs in document.tags:
        for key in ("src", "href"):
            if key in attrs and tag != "a":
                url = urljoin(response.url, attrs[key])
                assert urlsplit(url).netloc == urlsplit(devstack.authority).netloc, url
                asset = requests.get(url, timeout=10)
                assert asset.status_code == 200, url


@pytest.fixture
def walk(devstack):
    """Sign-in → MFA → consent in one browser, returning each page as it arrives."""
    browser = requests.Session()
    login = browser.get(authorize_url(devstack), timeout=10)
    login_doc = Document(login.text)
    mfa = submit(browser, login, login_doc, username=seed.PARTNER_ADMIN_UPN,
                 password=seed.PASSWORD)
    mfa_doc = Document(mfa.text)
    consent = submit(browser, mfa, mfa_doc, otp=mfa_doc.text("dev-otp"))
    return browser, [(login, login_doc), (mfa, mfa_doc), (consent, Document(consent.text))]


def test_sign_in_page_is_a_plain_username_and_password_form(devstack, walk):
    _, [(response, document), *_] = walk
    assert response.status_code == 200
    assert_self_contained(devstack, response, document)
    [form] = document.find("form", method="post")
    assert form["action"].endswith("/login")
    assert document.find("input", name="username", type="email")
    assert document.find("input", name="password", type="password")
    assert document.find("input", name="ctx", type="hidden")
    assert document.find("input", name="flowToken", type="hidden")
    assert document.find("button", type="submit")
    assert seed.CPV_APP_NAME in response.text
    assert "form-action 'self' http://localhost:8765" in (
        response.headers["Content-Security-Policy"])


def test_mfa_page_shows_the_one_time_code_in_dev_otp(devstack, walk):
    _, [_, (response, document), _] = walk
    assert_self_contained(devstack, response, document)
    assert re.fullmatch(r"\d{6}", document.text("dev-otp"))
    assert document.find("input", name="otp")
    assert seed.PARTNER_ADMIN_UPN in response.text


def test_consent_page_lists_permissions_readably_with_accept_and_cancel(devstack, walk):
    _, [*_, (response, document)] = walk
    assert_self_contained(devstack, response, document)
    permissions = document.text("permissions")
    assert "Access Partner Center on your behalf" in permissions
    assert "Microsoft Partner Center" in permissions
    assert "Maintain access to data you have given it access to" in permissions
    assert document.find("input", type="checkbox", name="consent_on_behalf")
    assert document.find("button", name="accept")
    assert document.find("button", name="cancel")
    assert seed.CPV_APP_NAME in response.text and seed.CPV_TENANT_NAME in response.text


def test_accepting_on_behalf_answers_the_client_with_a_code(devstack, walk):
    browser, [*_, (response, document)] = walk
    answer = submit(browser, response, document, accept="accept", consent_on_behalf="on")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(CALLBACK + "?code=")


def test_form_post_page_hands_over_the_response_with_an_external_script(devstack, walk):
    browser, _ = walk  # signed in, MFA done, consent granted
    response = browser.get(authorize_url(devstack, response_mode="form_post", prompt="none"),
                           timeout=10)
    document = Document(response.text)
    assert_self_contained(devstack, response, document)
    [form] = document.find("form", id="hiddenform")
    assert form["action"] == CALLBACK and form["method"] == "post"
    names = {i["name"] for i in document.find("input", type="hidden")}
    assert {"code", "state", "session_state"} <= names
    [script] = document.find("script")
    assert script["src"].endswith("/static/form_post.js")
    assert "form-action 'self' http://localhost:8765" in (
        response.headers["Content-Security-Policy"])


def test_error_page_explains_the_aadsts_code_with_troubleshooting_details(devstack):
    response = requests.get(authorize_url(devstack, redirect_uri="https://evil.example/cb"),
                            timeout=10)
    document = Document(response.text)
    assert response.status_code == 400
    assert_self_contained(devstack, response, document)
    assert document.text("error-code") == "AADSTS50011"
    assert "https://evil.example/cb" in document.text("error-message")
    assert "Troubleshooting details" in response.text
    assert "Correlation Id" in response.text
    assert not document.find("form")


def test_error_lookup_page_describes_codes(devstack):
    response = requests.get(f"{devstack.authority}/error?code=700082", timeout=10)
    assert response.status_code == 200
    assert "inactivity" in Document(response.text).text("card")


def test_sign_out_ends_the_session_and_returns_to_a_registered_uri(devstack, walk):
    browser, _ = walk
    response = browser.get(
        f"{devstack.authority}/organizations/oauth2/v2.0/logout", allow_redirects=False,
        params={"post_logout_redirect_uri": CALLBACK, "client_id": seed.CPV_APP_ID},
        timeout=10)
    assert response.status_code == 302 and response.headers["Location"] == CALLBACK
    silent = browser.get(authorize_url(devstack, prompt="none"), allow_redirects=False,
                         timeout=10)
    assert "error=login_required" in silent.headers["Location"]
