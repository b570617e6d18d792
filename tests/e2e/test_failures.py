"""End to end in Chromium: what an operator sees after something went wrong, and that every page
passes axe-core's WCAG 2.2 A/AA rules without a serious or critical violation.

The failures are real: the grant is revoked in the emulated Entra ID (AADSTS50173), the client
secret the broker holds is one Entra ID has let expire (AADSTS7000222). Revoking touches every
token of the partner admin, so this module runs on a devstack and a site of its own (one of
each for the whole module, and one signed-in browser context).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from devstack import seed
from tests.e2e.artifacts import ROOT, screenshot
from tests.e2e.authority import sign_in
from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import new_context, running_site, sign_in_operator
from tests.support.broker import consented_credential, make_broker, unique_id
from tests.support.devstack import environment, running_devstack

# the README's screenshots: refreshed from these tests with BROKER_DOCS_SCREENSHOTS=1
DOCS = ROOT / "docs" / "screenshots"
FOCUS_RING = "rgb(31, 68, 194)"  # --focus: 7.9:1 against white


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_devstack(tmp_path_factory.mktemp("failures-devstack")) as stack, \
            environment(stack.env):
        yield stack


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    with running_site(stack.env, tmp_path_factory.mktemp("failures-site"),
                      "consent-site-failures", BROKER_DISPLAY_NAME="Fabrikam Cloud") as site:
        yield site


@pytest.fixture(scope="module")
def reader(stack, tmp_path_factory):
    """A Broker in this process: prepares states a person would need weeks for, reads back."""
    return make_broker(stack, tmp_path_factory.mktemp("failures-reader"))


@pytest.fixture(scope="module")
def operator_context(browser) -> Iterator[BrowserContext]:
    # axe-core is injected as a script, which the site's CSP (rightly) refuses otherwise
    context = new_context(browser, bypass_csp=True)
    yield context
    context.close()


@pytest.fixture(scope="module")
def operator(operator_context, site) -> Page:
    page = operator_context.new_page()
    sign_in_operator(page, site)
    return page


@pytest.fixture
def visitor(browser) -> Iterator[Page]:
    """A browser with nobody signed in: the partner admin, or a stranger."""
    context = new_context(browser, bypass_csp=True)
    yield context.new_page()
    context.close()


def shot(page: Page, name: str, *, docs: str | None = None) -> None:
    path = screenshot(page, name)
    if docs and os.environ.get("BROKER_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{docs}.png")


def detail(page: Page, site, credential_id: str) -> None:
    page.goto(f"{site.url}/credentials/{credential_id}")


def reason_text(page: Page) -> str:
    return page.locator("#status-reason").inner_text()


def test_an_expired_client_secret_says_aadsts7000222_and_a_new_secret_fixes_it(
        operator, site, reader):
    credential = consented_credential(reader, own_app=True)
    # Entra ID let the secret the broker holds expire (an edit would refuse it up front)
    reader.vault.write_client_secret(credential.id, seed.PARTNER_APP_EXPIRED_SECRET,
                                     datetime(2099, 12, 31, tzinfo=UTC))
    detail(operator, site, credential.id)
    operator.get_by_role("button", name="Rotate now").click()

    expect(operator.locator("h1 .badge")).to_have_text("Error")
    flash = operator.locator(".alert--error")
    expect(flash).to_contain_text("Rotation failed. AADSTS7000222: the app's client secret has "
                                  "expired (found by rotation on ")
    expect(operator.locator(".alert--success")).to_have_count(0)
    why = reason_text(operator)
    assert "This credential is in error" in why
    assert "AADSTS7000222: the app's client secret has expired (found by rotation on" in why
    assert "What to do: Create a new client secret for the app in Microsoft Entra ID" in why
    assert " ok " not in why and "generate a new token" not in why  # the old, wrong advice
    shot(operator, "failure-expired-client-secret", docs="failure")
    assert_accessible(operator, "detail-error")

    # the fix: a wrong secret is refused before anything is saved, the right one is proven
    operator.get_by_role("link", name="Edit the client secret").click()
    operator.fill("#client_secret", "not-the-secret-of-this-app")
    operator.fill("#secret_expires_on", "2099-12-31")
    operator.get_by_role("button", name="Save only").click()
    summary = operator.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Nothing was saved: 1 error to correct")
    expect(summary).to_contain_text("Entra ID refused this client secret: AADSTS7000215")
    assert "not-the-secret-of-this-app" not in operator.content()
    shot(operator, "edit-client-secret-refused")
    assert_accessible(operator, "edit-form-invalid")
    summary.get_by_role("link").click()
    expect(operator.locator("#client_secret")).to_be_focused()
    assert operator.evaluate("getComputedStyle(document.activeElement).outlineColor") \
        == FOCUS_RING

    operator.fill("#client_secret", seed.PARTNER_APP_SECRET)
    operator.fill("#secret_expires_on", "2099-12-31")
    operator.get_by_role("button", name="Save only").click()
    expect(operator.locator(".alert--success")).to_contain_text(
        "Saved and checked: Entra ID accepted the new client secret and renewed the token")
    expect(operator.locator(".alert--error")).to_have_count(0)
    expect(operator.locator("h1 .badge")).to_have_text("Active")
    expect(operator.locator("#status-reason")).to_have_count(0)


def test_expiring_says_it_is_the_client_secret_and_what_to_do(operator, site, reader):
    credential = consented_credential(reader, own_app=True)
    soon = date.today() + timedelta(days=12)
    reader.edit(credential.id, _own_app_spec(credential.id, soon))
    detail(operator, site, credential.id)
    expect(operator.locator("h1 .badge")).to_have_text("Expiring")
    why = reason_text(operator)
    assert "Expiring soon" in why
    assert f"The app's client secret expires soon (expires {soon:%Y-%m-%d}" in why
    assert "enter it with Edit before the old one expires" in why
    shot(operator, "expiring-client-secret")
    assert_accessible(operator, "detail-expiring")


def test_a_credential_nobody_consented_to_counts_as_needing_attention(operator, site):
    credential_id = unique_id("e2e-pend")
    operator.goto(site.url + "/add?env=production")
    for field, value in (("#id", credential_id), ("#product", "Microsoft CSP (NCE)"),
                         ("#marketplace", "EU"), ("#tenant_id", seed.PARTNER_TENANT_DOMAIN)):
        operator.fill(field, value)
    operator.get_by_role("button", name="Save only").click()
    why = reason_text(operator)
    assert "Waiting for consent" in why and "Registered, but nobody has consented yet" in why
    assert "What to do: An admin of the partner tenant signs in with MFA" in why
    operator.goto(site.url + "/?env=test")
    marker = operator.locator(".tabs__tab", has_text="Production").locator(".tabs__attention")
    expect(marker).to_have_text(re.compile(r"^\d+ needs? attention$"))
    assert_accessible(operator, "list-test")


def test_remove_then_recover_then_purge_frees_the_id(operator, site):
    credential_id = unique_id("e2e-rm")
    operator.goto(site.url + "/add")
    for field, value in (("#id", credential_id), ("#product", "Azure plan"),
                         ("#marketplace", "US"), ("#tenant_id", seed.PARTNER_TENANT_DOMAIN)):
        operator.fill(field, value)
    operator.get_by_role("button", name="Save only").click()
    operator.get_by_role("link", name="Remove", exact=True).click()
    expect(operator.locator("h1")).to_have_text(f"Remove {credential_id}?")
    assert_accessible(operator, "remove-confirm")
    operator.get_by_role("button", name="Remove credential").click()
    expect(operator.locator(".alert--success")).to_contain_text(
        f"Credential {credential_id} was removed")

    operator.get_by_role("link", name="Removed credentials").click()
    row = operator.locator(f"tr[data-removed='{credential_id}']")
    expect(row).to_be_visible()
    shot(operator, "removed-credentials")
    assert_accessible(operator, "removed")
    row.get_by_role("button", name="Recover").click()
    expect(operator.locator(".alert--success")).to_have_text(
        f"Credential {credential_id} was recovered with all its versions.")
    expect(operator.locator("h1")).to_contain_text(credential_id)

    operator.get_by_role("link", name="Remove", exact=True).click()
    operator.get_by_role("button", name="Remove credential").click()
    operator.goto(site.url + "/removed")
    operator.locator(f"tr[data-removed='{credential_id}']").get_by_role("link").click()
    assert_accessible(operator, "purge-confirm")
    operator.get_by_role("button", name="Purge for good").click()
    expect(operator.locator(".alert--success")).to_contain_text("its id can be used again")
    operator.goto(site.url + "/add")
    for field, value in (("#id", credential_id), ("#product", "Azure plan"),
                         ("#marketplace", "US"), ("#tenant_id", seed.PARTNER_TENANT_DOMAIN)):
        operator.fill(field, value)
    operator.get_by_role("button", name="Save only").click()
    expect(operator.locator("h1 .badge")).to_have_text("Pending consent")


def test_the_forms_mark_required_fields_and_put_focus_on_what_went_wrong(operator, site):
    operator.goto(site.url + "/add")
    assert_accessible(operator, "add-form")
    assert operator.locator("label[for=id] .field__required").count() == 1
    assert operator.locator("#id").get_attribute("aria-required") == "true"
    assert operator.locator("#id").get_attribute("placeholder").startswith("e.g. ")
    operator.get_by_role("button", name="Save only").click()
    summary = operator.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary.locator("h2")).to_have_text(re.compile(r"^Nothing was saved: \d+ errors to "
                                                          r"correct$"))
    expect(summary.get_by_role("link").first).to_have_attribute("href", "#id")
    assert_accessible(operator, "add-form-invalid")
    operator.keyboard.press("Tab")
    assert operator.evaluate("getComputedStyle(document.activeElement).outlineColor") \
        == FOCUS_RING


def test_a_cancelled_consent_and_a_missing_page_pass_the_accessibility_checks(operator, site):
    credential_id = unique_id("e2e-cancel")
    operator.goto(site.url + "/add")
    for field, value in (("#id", credential_id), ("#product", "Azure plan"),
                         ("#marketplace", "US"), ("#tenant_id", seed.PARTNER_TENANT_DOMAIN)):
        operator.fill(field, value)
    with operator.expect_navigation():
        operator.get_by_role("button", name="Save and sign in with Microsoft").click()
    sign_in(operator, site.url, seed.PARTNER_ADMIN_UPN, consent=False)
    expect(operator.locator("h1")).to_have_text("Consent was cancelled")
    expect(operator.locator(".what-to-do")).to_contain_text("Start the consent again")
    assert_accessible(operator, "consent-failed")
    operator.goto(site.url + "/credentials/no-such-credential")
    expect(operator.locator("h1")).to_have_text("No such credential")
    assert_accessible(operator, "error-404")
    operator.goto(f"{site.url}/credentials/{credential_id}/invite")
    assert_accessible(operator, "invite-page")
    operator.goto(f"{site.url}/credentials/{credential_id}/edit")
    assert_accessible(operator, "edit-form")


def test_the_public_pages_pass_the_accessibility_checks(visitor, site):
    visitor.goto(site.url + "/")
    expect(visitor.locator("h1")).to_have_text("Operator sign-in")
    assert_accessible(visitor, "sign-in")
    visitor.goto(site.url + "/auth/local?token=" + "x" * 43)
    assert_accessible(visitor, "sign-in-link-invalid")
    visitor.goto(site.url + "/invite/forged")
    expect(visitor.locator("h1")).to_have_text("This consent link is not valid")
    assert "broker invite" not in visitor.content()  # no CLI commands for partner admins
    assert_accessible(visitor, "invite-invalid")
    visitor.goto(site.url + "/consent/done")
    assert_accessible(visitor, "consent-nothing")


def test_the_almost_there_page_passes_the_accessibility_checks(visitor, site, monkeypatch):
    """The page a site without its settings shows, rendered by the app and served in place of
    one of the running site's pages (its stylesheet comes from the site, as it would)."""
    from consent_web import create_app

    monkeypatch.delenv("BROKER_VAULT_URL")
    response = create_app({"TESTING": True}).test_client().get("/")
    assert response.status_code == 503
    visitor.route(site.url + "/setup-preview", lambda route: route.fulfill(
        status=200, body=response.get_data(as_text=True), content_type="text/html"))
    visitor.goto(site.url + "/setup-preview")
    expect(visitor.locator("h1")).to_have_text("Almost there: set these settings")
    assert_accessible(visitor, "setup")


def test_signing_out_leaves_no_operator_in_the_header(browser, site):
    context = new_context(browser, bypass_csp=True)
    try:
        page = context.new_page()
        sign_in_operator(page, site)
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("h1")).to_have_text("Signed out")
        expect(page.locator(".user")).to_have_count(0)
        expect(page.locator(".topnav")).to_have_count(0)
        assert_accessible(page, "signed-out")
    finally:
        context.close()


def test_a_revoked_grant_says_aadsts50173_and_the_invite_already_sent_still_works(
        operator, site, stack, browser):
    credential_id = unique_id("e2e-rev")
    operator.goto(site.url + "/add")
    for field, value in (("#id", credential_id), ("#product", "Microsoft CSP (NCE)"),
                         ("#marketplace", "US"), ("#tenant_id", seed.PARTNER_TENANT_DOMAIN)):
        operator.fill(field, value)
    with operator.expect_navigation():
        operator.get_by_role("button", name="Save and sign in with Microsoft").click()
    assert "prompt=select_account" in operator.url
    sign_in(operator, site.url, seed.PARTNER_ADMIN_UPN)
    expect(operator.locator("h1")).to_have_text("Consent granted")
    assert_accessible(operator, "consent-done")
    operator.get_by_role("link", name=f"Open {credential_id}").click()
    shot(operator, "credential-detail-active", docs="detail")
    assert_accessible(operator, "detail-active")

    # the operator sends a link, then the partner's admin sessions are revoked
    operator.get_by_role("link", name="Invite", exact=True).click()
    operator.get_by_role("button", name="Create link").click()
    sent = operator.locator(".secret-id code").inner_text()
    assert_accessible(operator, "invite-created")
    stack.revoke(seed.PARTNER_ADMIN_UPN)

    detail(operator, site, credential_id)
    operator.get_by_role("button", name="Rotate now").click()
    expect(operator.locator("h1 .badge")).to_have_text("Needs consent")
    expect(operator.locator(".alert--error")).to_contain_text(
        "Rotation failed. AADSTS50173: the grant was revoked")
    why = reason_text(operator)
    assert "A new consent is needed" in why
    assert "AADSTS50173: the grant was revoked (a password change, or an admin revoked the " \
           "user's sessions) (found by rotation on" in why
    assert "What to do: An admin of the partner tenant must consent again" in why
    callout = operator.locator("#status-reason")
    expect(callout.get_by_role("link", name="Send an invite link")).to_be_visible()
    token_row = operator.locator("dt:has-text('Token expires in') + dd")
    expect(token_row).to_contain_text("No longer usable")
    assert not re.search(r"^\s*\d+ days\s*$", token_row.inner_text())
    expect(operator.locator("dt:has-text('Last validation') + dd")).not_to_contain_text(
        "needs-consent")
    shot(operator, "failure-revoked-grant")
    assert_accessible(operator, "detail-needs-consent")

    # Validate finds the same; neither it nor the rotation replaced the link already sent
    operator.get_by_role("button", name="Validate").click()
    expect(operator.locator(".alert--error")).to_contain_text("AADSTS50173")
    operator.get_by_role("link", name="Invite", exact=True).click()
    expect(operator.locator("#open-invite code")).to_have_text(sent)

    operator.goto(f"{site.url}/?q={credential_id}")
    reason_row = operator.locator(f"tr[data-reason-for='{credential_id}']")
    expect(reason_row).to_contain_text("AADSTS50173: the grant was revoked")
    expect(reason_row).to_contain_text("What to do: An admin of the partner tenant must consent")
    row = operator.locator(f"tr[data-credential='{credential_id}']")
    expect(row.locator("td[data-label='Token expires in']")).to_have_text("Not usable")
    operator.goto(f"{site.url}/")
    shot(operator, "credentials-with-failures", docs="credentials")
    assert_accessible(operator, "list-with-failures")

    # the partner admin opens the link sent before the failure, and consent is back
    admin = new_context(browser, bypass_csp=True)
    try:
        page = admin.new_page()
        page.goto(sent)
        expect(page.locator(".invite__from")).to_have_text("From Fabrikam Cloud")
        assert "127.0.0.1" not in page.locator("main").inner_text()
        assert_accessible(page, "invite-landing")
        with page.expect_navigation():
            page.get_by_role("button", name="Continue to Microsoft sign-in").click()
        sign_in(page, site.url, seed.PARTNER_ADMIN_UPN)
        expect(page.locator("h1")).to_have_text("Consent granted")
        content = page.content()
        assert "broker " not in page.locator("main").inner_text()
        assert not re.search(r"\b[0-9a-f]{32}\b", content)  # no version ids for partners
        assert_accessible(page, "consent-done-partner")
    finally:
        admin.close()
    detail(operator, site, credential_id)
    expect(operator.locator("h1 .badge")).to_have_text("Active")


def _own_app_spec(credential_id: str, expires: date):
    from broker.credentials import CredentialSpec

    return CredentialSpec(id=credential_id, environment="test", product="Billing",
                          marketplace="US", tenant_id=seed.PARTNER_TENANT_ID,
                          client_id=seed.PARTNER_APP_ID, client_secret=seed.PARTNER_APP_SECRET,
                          secret_expires_on=expires)

