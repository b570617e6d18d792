"""The consent round trip: the flow is sealed in the session, bound, single use, and every
way it can fail has a page that says what to do."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.errors import (
    CONSENT_FAILURE_REASONS,
    AppMisconfigured,
    Conflict,
    CredentialNotFound,
    NeedsConsent,
    TransientFailure,
)
from consent_web.consent import FAILURES
from tests.unit.web_fakes import Web, assert_no_secrets

pytestmark = pytest.mark.seed("contoso", active=False)


def start(web: Web, credential_id: str = "contoso") -> str:
    """Begin consent as the operator would; returns the state the authority will echo."""
    response = web.post(f"/credentials/{credential_id}/consent")
    assert response.status_code == 303
    return parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]


def test_callback_finishes_consent_and_hands_out_the_unversioned_secret_identifier(web):
    state = start(web)
    response = web.client.get(f"/consent/callback?code=abc&state={state}")
    assert response.status_code == 303 and response.headers["Location"] == "/consent/done"
    page = web.client.get("/consent/done")
    version = web.broker.versions("contoso")[0]
    assert page.status_code == 200
    assert "Consent granted" in page.text
    # consumers get the URL that always resolves to the newest token, never one version's
    assert f'data-copy="{web.broker.get_credential("contoso").secret_id}"' in page.text
    assert version.version not in page.text
    assert "admin@contoso.example" in page.text
    assert web.broker.get_credential("contoso").stored_status == "active"
    assert_no_secrets(web, page)


def test_the_flow_in_the_cookie_cannot_be_read(web):
    start(web)
    session = web.session_text()
    assert "consent_flow" in session
    assert "VERIFIER-" not in session and "code_verifier" not in session


def test_callback_is_single_use(web):
    state = start(web)
    assert web.client.get(f"/consent/callback?code=abc&state={state}").status_code == 303
    replay = web.client.get(f"/consent/callback?code=abc&state={state}")
    assert replay.status_code == 400
    assert "This sign-in cannot be completed" in replay.text
    assert len([c for c in web.broker.calls if c[0] == "finish_consent"]) == 1


def test_callback_with_another_state_is_refused_and_burns_the_flow(web):
    state = start(web)
    response = web.client.get("/consent/callback?code=abc&state=forged")
    assert response.status_code == 400
    assert web.client.get(f"/consent/callback?code=abc&state={state}").status_code == 400
    assert not [c for c in web.broker.calls if c[0] == "finish_consent"]


def test_callback_in_another_browser_finds_no_flow(web):
    state = start(web)
    stranger = Web(web.broker)
    response = stranger.client.get(f"/consent/callback?code=abc&state={state}")
    assert response.status_code == 400
    assert "started somewhere else" in response.text


def test_a_flow_older_than_fifteen_minutes_is_refused(web, monkeypatch):
    state = start(web)
    later = time.time() + 16 * 60
    monkeypatch.setattr(time, "time", lambda: later)
    response = web.client.get(f"/consent/callback?code=abc&state={state}")
    assert response.status_code == 400
    assert not [c for c in web.broker.calls if c[0] == "finish_consent"]


@pytest.mark.parametrize("query", [
    "", "?code=abc", "?state=", "?state=" + "s" * 20000,
    "&".join(f"?p{i}=v" for i in range(30)), "?error=access_denied",
    "?state=%ff%fe", "?code[]=1&state[$ne]=x",
])
def test_garbage_callbacks_are_4xx_pages(web, query):
    start(web)
    response = web.client.get(f"/consent/callback{query}")
    assert 400 <= response.status_code < 500
    assert "<h1" in response.text


def test_user_cancelling_at_the_authority_gets_the_cancelled_page(web):
    state = start(web)
    response = web.client.get(
        f"/consent/callback?error=access_denied&error_description=AADSTS65004&state={state}")
    assert response.status_code == 400
    assert "Consent was cancelled" in response.text
    assert "Try again" in response.text and "Send an invite link instead" in response.text


@pytest.mark.parametrize("reason", [r for r in CONSENT_FAILURE_REASONS])
def test_every_consent_failure_reason_has_a_page_that_says_what_to_do(web, reason):
    state = start(web)
    response = web.client.get(f"/consent/callback?state={state}&error_reason={reason}")
    failure = FAILURES[reason]
    assert response.status_code == failure.status
    assert 400 <= failure.status < 500
    text = response.text.replace("&#34;", '"').replace("&#39;", "'")
    assert failure.title in text and failure.what_to_do in text
    assert "What to do" in text


@pytest.mark.parametrize(("error", "status", "title"), [
    (NeedsConsent(), 409, "Consent is still needed"),
    (AppMisconfigured(), 502, "The app registration was refused"),
    (TransientFailure(), 503, "Azure is not answering right now"),
    (Conflict(), 409, "Another change got there first"),
    (CredentialNotFound("contoso"), 404, "The credential no longer exists"),
])
def test_other_broker_errors_at_the_callback_have_pages(web, error, status, title):
    state = start(web)
    web.broker.fail["finish_consent"] = error
    response = web.client.get(f"/consent/callback?code=abc&state={state}")
    assert response.status_code == status
    assert title in response.text
    assert str(error).replace("'", "&#39;") in response.text


def test_failure_pages_name_the_specific_problem(web):
    state = start(web)
    page = web.client.get(f"/consent/callback?state={state}&error_reason=no-mfa").text
    assert "Multi-factor authentication is required" in page and "aka.ms/mfasetup" in page
    state = start(web)
    page = web.client.get(f"/consent/callback?state={state}&error_reason=not-admin-agent").text
    assert "The Admin Agent role is missing" in page
    state = start(web)
    page = web.client.get(f"/consent/callback?state={state}&error_reason=wrong-tenant").text
    assert "Signed in to the wrong organization" in page


def test_done_without_a_result_is_a_404_for_visitors_and_a_redirect_for_operators(web):
    assert web.client.get("/consent/done").status_code == 302
    assert Web(web.broker).client.get("/consent/done").status_code == 404
