"""`classify`: every Entra error body maps to the error that says what a human must do."""

from __future__ import annotations

import jwt
import pytest

from broker.consent import consent_scopes, is_admin_agent, role_names
from broker.errors import (
    AppMisconfigured,
    ConsentFailed,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.identity import (
    ARM_SCOPE,
    PARTNER_CENTER_SCOPE,
    classify,
    is_microsoft_host,
    unverified_claims,
)

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
SECRETISH = "0.AVYAsecretrefreshtokenvaluethatmustneverbeshown-xyz"


def body(error: str, code: int | None = None, **extra) -> dict:
    description = f"AADSTS{code}: something happened. Trace ID: 1" if code else "no code"
    result = {"error": error, "error_description": description, **extra}
    if code:
        result["error_codes"] = [code]
    return result


@pytest.mark.parametrize("error,code", [
    ("invalid_grant", 700082),
    ("invalid_grant", 50173),
    ("invalid_grant", 70000),
    ("invalid_grant", 65001),
    ("interaction_required", 50076),
    ("interaction_required", 50079),
    ("invalid_grant", None),
])
def test_dead_grants_need_consent(error, code):
    exc = classify(body(error, code))
    assert isinstance(exc, NeedsConsent)
    if code:
        assert f"AADSTS{code}" in str(exc)
    assert "consent" in exc.hint


@pytest.mark.parametrize("error,code", [
    ("invalid_client", 7000215),
    ("invalid_client", 7000222),
    ("unauthorized_client", 700016),
    ("invalid_client", None),
    ("unauthorized_client", None),
    ("invalid_request", 700016),  # the code wins over the generic error name
    ("invalid_grant", 700007),  # the token was issued to another app: the client id is wrong
])
def test_app_problems_are_misconfiguration_and_keep_the_token(error, code):
    exc = classify(body(error, code))
    assert isinstance(exc, AppMisconfigured)
    assert "kept" in str(exc)
    if code:
        assert f"AADSTS{code}" in str(exc)


def test_expired_client_secret_says_to_renew_it():
    exc = classify(body("invalid_client", 7000222))
    assert "expired" in str(exc)
    assert "new client secret" in exc.hint


@pytest.mark.parametrize("result,retry_after", [
    ({"status_code": 503}, None),
    ({"status_code": 500}, None),
    ({"status_code": 429, "retry_after": 7}, 7.0),
    ({"status_code": 503, "retry_after": "2"}, 2.0),
    (body("temporarily_unavailable", 90024), None),
    (body("server_error"), None),
    ({"status_code": 503, "retry_after": "soon"}, None),
])
def test_outages_are_transient_with_retry_after(result, retry_after):
    exc = classify(result)
    assert isinstance(exc, TransientFailure)
    assert exc.retry_after == retry_after


def test_code_exchange_failures_are_consent_failures():
    assert classify(body("invalid_grant", 54005), flow="code").reason == "code-rejected"
    assert classify(body("invalid_grant", 70008), flow="code").reason == "code-rejected"
    assert classify(body("interaction_required", 50076), flow="code").reason == "no-mfa"
    assert classify(body("invalid_grant", 65001, suberror="consent_required"),
                    flow="code").reason == "admin-consent-required"
    # the app being wrong is still the app's fault, even at the end of a consent
    assert isinstance(classify(body("invalid_client", 7000222), flow="code"), AppMisconfigured)


@pytest.mark.parametrize("params,reason", [
    ({"error": "access_denied", "error_description": "the user cancelled"}, "cancelled"),
    ({"error": "access_denied", "error_description": "AADSTS65004: declined"}, "cancelled"),
    ({"error": "consent_required", "error_description": "AADSTS65001: none"},
     "admin-consent-required"),
    ({"error": "invalid_request", "error_description": "AADSTS90094: admin"},
     "admin-consent-required"),
    ({"error": "interaction_required", "error_description": "AADSTS50079: register"}, "no-mfa"),
    ({"error": "access_denied", "error_description": "AADSTS50105: not assigned"},
     "not-admin-agent"),
])
def test_sign_in_page_errors_become_consent_failures(params, reason):
    exc = classify(params, flow="authorize")
    assert isinstance(exc, ConsentFailed)
    assert exc.reason == reason


def test_messages_never_repeat_entra_text_that_could_hold_a_token():
    result = body("invalid_grant", 700082)
    result["error_description"] += f" token={SECRETISH}"
    for flow in ("refresh", "code", "authorize"):
        exc = classify(result, flow=flow)
        assert SECRETISH not in str(exc)
        assert SECRETISH not in exc.hint


def test_unknown_errors_keep_the_token_and_name_the_code():
    exc = classify(body("invalid_scope", 70011))
    assert isinstance(exc, AppMisconfigured)
    assert "AADSTS70011" in str(exc)


def test_unverified_claims_reads_a_jwt_and_tolerates_garbage():
    token = jwt.encode({"tid": "t", "amr": ["pwd", "mfa"]}, "k" * 32, algorithm="HS256")
    assert unverified_claims(token)["amr"] == ["pwd", "mfa"]
    assert unverified_claims("not-a-jwt") == {}


@pytest.mark.parametrize("host,microsoft", [
    ("https://login.microsoftonline.com", True),
    ("https://login.microsoftonline.us/", True),
    ("https://localhost:47401", False),
    ("https://login.microsoftonline.com.evil.example", False),
])
def test_instance_discovery_only_for_microsoft_clouds(host, microsoft):
    assert is_microsoft_host(host) is microsoft


def test_roles_are_named_from_wids_and_admin_agent_from_groups():
    claims = {"wids": [GLOBAL_ADMIN, "b79fbf4d-3ef9-4689-8143-76b194e85509"],
              "groups": ["0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"]}
    assert role_names(claims) == ("Global Administrator", "Admin Agent")
    assert role_names({"wids": [], "groups": ["g"]}) == ("Admin Agent",)


def test_a_present_but_empty_groups_claim_is_not_an_admin_agent():
    assert not is_admin_agent({"groups": []})
    assert is_admin_agent({"groups": ["g"]})
    # no groups claim at all (not emitted, or an overage): Entra's own refusal decides
    assert is_admin_agent({"wids": [GLOBAL_ADMIN]})


def test_partner_center_is_always_the_first_consent_scope():
    assert consent_scopes(None) == [PARTNER_CENTER_SCOPE]
    assert consent_scopes([ARM_SCOPE, PARTNER_CENTER_SCOPE, ARM_SCOPE]) == \
        [PARTNER_CENTER_SCOPE, ARM_SCOPE]
    with pytest.raises(InvalidInput):
        consent_scopes(["User.Read offline_access"])
