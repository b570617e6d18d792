"""The operator's pages: the list per environment, add/edit forms, detail and its actions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from broker.errors import AppMisconfigured, NeedsConsent, TransientFailure
from tests.unit.web_fakes import AUTHORITY, CPV_ID, assert_no_secrets

OWN_APP = "11111111-2222-4333-8444-555555555555"
FUTURE = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
PAST = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
OWN_SECRET = "own~APP-secret-0123456789-abcdefghijklmn"


def valid_form(**overrides) -> dict[str, str]:
    form = {"id": "contoso-us", "environment": "test", "product": "Microsoft CSP (NCE)",
            "marketplace": "US", "tenant_id": "contoso.example", "client_id": "",
            "client_secret": "", "secret_expires_on": "", "next_step": "save"}
    form.update(overrides)
    return form


def test_list_shows_each_environment_on_its_own_tab(web):
    web.broker.seed("contoso-test")
    web.broker.seed("contoso-prod", environment="production")
    web.broker.seed("fabrikam-pending", active=False)
    test_tab = web.client.get("/")
    assert test_tab.status_code == 200
    assert "contoso-test" in test_tab.text and "fabrikam-pending" in test_tab.text
    assert "contoso-prod" not in test_tab.text
    assert re.search(r'aria-current="page">\s*Test <span class="tabs__count">2', test_tab.text)
    prod_tab = web.client.get("/?env=production")
    assert "contoso-prod" in prod_tab.text and "contoso-test" not in prod_tab.text


def test_list_row_has_status_tenant_marketplace_product_days_and_copyable_url(web):
    web.broker.seed("contoso-own", client_id=OWN_APP)
    page = web.client.get("/").text
    row = page[page.index('data-credential="contoso-own"'):]
    row = row[:row.index("</tr>")]
    assert 'class="badge badge--active">Active' in row
    # the secret expires 200 days from today, at the end of that day (as Broker stores it)
    for text in ("contoso.example", "US", "Microsoft CSP (NCE)", "just now", "89 days",
                 "200 days"):
        assert text in row
    url = "https://unit.vault.azure.net/secrets/rt-contoso-own"
    assert f'data-copy="{url}"' in row


def test_empty_environment_invites_to_add_credentials(web):
    page = web.client.get("/?env=production")
    assert "No production credentials yet" in page.text
    assert 'href="/add?env=production"' in page.text


def test_add_form_preselects_the_environment_of_the_tab(web):
    page = web.client.get("/add?env=production").text
    assert re.search(r'checked id="environment-1"[^>]*value="production"|'
                     r'value="production"[^>]*checked', page)


def test_add_cpv_credential_and_sign_in_goes_to_the_authority(web):
    response = web.post("/add", valid_form(next_step="consent"))
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{AUTHORITY}/authorize?")
    credential = web.broker.get_credential("contoso-us")
    assert credential.client_id is None and credential.stored_status == "pending-consent"
    begin = next(c for c in web.broker.calls if c[0] == "begin_consent")
    assert begin[2] == "http://localhost:47400/consent/callback"
    assert begin[3] is False
    assert "VERIFIER-" not in web.session_text()  # the flow is sealed, not readable


def test_add_own_app_credential_with_save_only_goes_to_the_detail(web):
    form = valid_form(client_id=OWN_APP, client_secret=OWN_SECRET, secret_expires_on=FUTURE)
    response = web.post("/add", form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/credentials/contoso-us"
    assert web.broker.client_secrets["contoso-us"] == OWN_SECRET
    detail = web.client.get("/credentials/contoso-us")
    assert "Waiting for consent" in detail.text and OWN_APP in detail.text
    assert_no_secrets(web, detail)


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"id": ""}, "id", "lowercase letters"),
    ({"id": "Has Spaces"}, "id", "lowercase letters"),
    ({"id": "-dash"}, "id", "lowercase letters"),
    ({"id": "x" * 64}, "id", "Field cannot be longer than 63"),
    ({"environment": "staging"}, "environment", "Not a valid choice"),
    ({"environment": ""}, "environment", "Not a valid choice"),
    ({"product": ""}, "product", "Enter the product"),
    ({"product": "p" * 65}, "product", "Enter the product"),
    ({"marketplace": ""}, "marketplace", "Enter the marketplace"),
    ({"marketplace": "bell\x07"}, "marketplace", "Enter the marketplace"),
    ({"tenant_id": ""}, "tenant_id", "partner tenant"),
    ({"tenant_id": "not a tenant"}, "tenant_id", "partner tenant"),
    ({"tenant_id": "<script>alert(1)</script>"}, "tenant_id", "partner tenant"),
    ({"client_id": "not-a-guid", "client_secret": OWN_SECRET, "secret_expires_on": FUTURE},
     "client_id", "client id as a GUID"),
    ({"client_id": OWN_APP, "secret_expires_on": FUTURE}, "client_secret", "client secret"),
    ({"client_id": OWN_APP, "client_secret": OWN_SECRET}, "secret_expires_on", "expires"),
    ({"client_id": OWN_APP, "client_secret": OWN_SECRET, "secret_expires_on": PAST},
     "secret_expires_on", "in the future"),
    ({"client_id": OWN_APP, "client_secret": OWN_SECRET, "secret_expires_on": "31/12/2030"},
     "secret_expires_on", "Not a valid date"),
    ({"client_secret": OWN_SECRET}, "client_secret", "Leave the client secret blank"),
    ({"secret_expires_on": FUTURE}, "secret_expires_on", "Leave the expiry blank"),
])
def test_invalid_add_form_shows_inline_errors_and_stores_nothing(web, changes, field, message):
    response = web.post("/add", valid_form(**changes))
    assert response.status_code == 400
    assert "Nothing was saved" in response.text
    error = re.search(rf'<p class="field__error" id="{field}(?:-\d)?-error">([^<]*)</p>|'
                      rf'<legend[^>]*>Environment</legend>.*?field__error">([^<]*)',
                      response.text, re.S)
    assert error, response.text
    assert message in (error.group(1) or error.group(2)).replace("&#39;", "'")
    assert 'aria-invalid="true"' in response.text or field == "environment"
    assert web.broker.versions_by_id == {}
    assert OWN_SECRET not in response.text  # a typed secret is never echoed back


def test_adding_an_existing_id_is_an_inline_error(web):
    web.broker.seed("contoso-us")
    response = web.post("/add", valid_form())
    assert response.status_code == 400
    assert "exists already" in response.text


def test_a_failed_sign_in_start_after_save_keeps_the_credential_and_says_why(web):
    web.broker.fail["begin_consent"] = TransientFailure("Entra ID is not answering.")
    response = web.post("/add", valid_form(next_step="consent"))
    assert response.status_code == 303 and response.headers["Location"] == \
        "/credentials/contoso-us"
    page = web.client.get("/credentials/contoso-us").text
    assert "But the sign-in could not be started: Entra ID is not answering." in page
    # one message says both what was saved and what failed: never a green "saved" beside it
    assert "alert--success" not in page and page.count('class="alert ') == 1


def test_edit_form_is_prefilled_and_never_shows_the_secret(web):
    web.broker.seed("contoso-own", client_id=OWN_APP)
    page = web.client.get("/credentials/contoso-own/edit")
    assert page.status_code == 200
    assert f'value="{OWN_APP}"' in page.text and 'value="contoso.example"' in page.text
    assert "Leave blank to keep the stored secret." in page.text
    assert_no_secrets(web, page)


def test_edit_of_product_only_keeps_the_token(web):
    web.broker.seed("contoso")
    response = web.post("/credentials/contoso/edit",
                        valid_form(id="ignored", product="Azure plan"))
    assert response.status_code == 303 and response.headers["Location"] == "/credentials/contoso"
    credential = web.broker.get_credential("contoso")
    assert credential.product == "Azure plan" and credential.stored_status == "active"
    assert "stored refresh token stays in use" in web.client.get("/credentials/contoso").text


def test_edit_of_tenant_needs_a_new_consent_and_goes_to_sign_in(web):
    web.broker.seed("contoso")
    response = web.post("/credentials/contoso/edit",
                        valid_form(tenant_id="fabrikam.example", next_step="consent"))
    assert response.status_code == 303
    assert response.headers["Location"].startswith(AUTHORITY)
    assert web.broker.get_credential("contoso").stored_status == "pending-consent"
    assert all(not v.enabled for v in web.broker.versions("contoso")[1:])


def test_invalid_edit_changes_nothing(web):
    web.broker.seed("contoso")
    before = web.broker.versions("contoso")
    response = web.post("/credentials/contoso/edit", valid_form(tenant_id="bad tenant"))
    assert response.status_code == 400
    assert web.broker.versions("contoso") == before


@pytest.mark.parametrize("path", ["/credentials/nope", "/credentials/nope/edit",
                                  "/credentials/nope/remove", "/credentials/nope/invite"])
def test_unknown_credential_pages_are_404(web, path):
    response = web.client.get(path)
    assert response.status_code == 404
    assert "No such credential" in response.text


@pytest.mark.parametrize("action", ["consent", "generate-token", "validate", "rotate", "remove",
                                    "invite", "edit"])
def test_actions_on_an_unknown_credential_are_404(web, action):
    response = web.post(f"/credentials/nope/{action}", valid_form())
    assert response.status_code == 404


def test_detail_shows_versions_roles_validation_and_the_secret_identifier(web):
    web.broker.seed("contoso")
    web.post("/credentials/contoso/validate")
    page = web.client.get("/credentials/contoso")
    text = page.text
    assert "https://unit.vault.azure.net/secrets/rt-contoso" in text
    assert "admin@contoso.example" in text
    assert '<li class="chip">Global Administrator</li>' in text
    assert '<li class="chip">Admin Agent</li>' in text
    assert "Version history" in text and text.count("<code title=") == 2
    for action in ("Validate", "Generate token", "Rotate now", "Edit", "Remove", "Invite"):
        assert f">{action}<" in text
    assert_no_secrets(web, page)


def test_validate_reports_success(web):
    web.broker.seed("contoso")
    response = web.post("/credentials/contoso/validate")
    assert response.status_code == 303
    page = web.client.get(response.headers["Location"]).text
    assert "Validation passed: the refresh token works with MFA and Partner Center answered " \
           "as Contoso Ltd." in page


def test_validate_reports_failure(web):
    web.broker.seed("contoso")
    web.broker.validation_ok = False
    web.post("/credentials/contoso/validate")
    page = web.client.get("/credentials/contoso").text
    assert "Validation failed. The token was refused." in page


@pytest.mark.parametrize("error", [NeedsConsent(), AppMisconfigured(), TransientFailure()])
def test_validate_errors_become_a_message_with_what_to_do(web, error):
    web.broker.seed("contoso")
    web.broker.fail["validate"] = error
    response = web.post("/credentials/contoso/validate")
    assert response.status_code == 303
    page = web.client.get("/credentials/contoso").text.replace("&#39;", "'")
    assert "Validation failed: " + str(error) in page
    assert error.hint.split("`")[0] in page


def test_generate_token_reconsents_with_prompt_consent(web):
    web.broker.seed("contoso")
    response = web.post("/credentials/contoso/generate-token")
    assert response.status_code == 303 and response.headers["Location"].startswith(AUTHORITY)
    assert ("begin_consent", "contoso", "http://localhost:47400/consent/callback", True, None) \
        in web.broker.calls


def test_rotate_now_stores_a_new_version(web):
    web.broker.seed("contoso")
    response = web.post("/credentials/contoso/rotate")
    assert response.status_code == 303
    assert "Rotated: the refresh token was redeemed" in web.client.get("/credentials/contoso").text
    assert len(web.broker.versions("contoso")) == 3


def test_rotate_now_reports_a_skip(web):
    web.broker.seed("contoso")
    web.broker.rotation_outcome = "skipped"
    web.post("/credentials/contoso/rotate")
    assert "Not rotated this time: not due" in web.client.get("/credentials/contoso").text


def test_remove_asks_for_confirmation_then_removes(web):
    web.broker.seed("contoso")
    confirm = web.client.get("/credentials/contoso/remove")
    assert confirm.status_code == 200 and "Remove contoso?" in confirm.text
    assert "you can recover it from Removed credentials" in confirm.text
    assert "is soft-deleted" in confirm.text  # one secret: "is", not "are"
    assert web.broker.versions("contoso")
    response = web.post("/credentials/contoso/remove")
    assert response.status_code == 303 and response.headers["Location"] == "/?env=test"
    assert ("remove_credential", "contoso") in web.broker.calls
    assert "Credential contoso was removed" in web.client.get("/").text


def test_cpv_app_is_named_on_the_add_form(web):
    assert CPV_ID in web.client.get("/add").text


def test_every_bad_field_is_reported_in_one_round_trip(web):
    response = web.post("/add", valid_form(id="Bad Id", product="", marketplace="",
                                           tenant_id="nope", secret_expires_on="not-a-date"))
    assert response.status_code == 400
    for field in ("id", "product", "marketplace", "tenant_id", "secret_expires_on"):
        assert f'id="{field}-error"' in response.text
    assert web.broker.versions_by_id == {}
