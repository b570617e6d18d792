"""End to end in headless Chromium: the real consent site process, devstack's Key Vault and
Entra pages, and a person clicking through them (operator, then partner admin)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from devstack import seed
from tests.e2e.artifacts import screenshot
from tests.e2e.authority import sign_in
from tests.support.broker import make_broker, unique_id


@pytest.fixture(scope="module")
def vault_reader(devstack, tmp_path_factory):
    """A Broker in this process, only to read what the site stored (and prove it is secret)."""
    return make_broker(devstack, tmp_path_factory.mktemp("reader"))


def add_credential(page: Page, site_url: str, credential_id: str, *, sign_in_now: bool = True,
                   shot: str | None = None) -> None:
    page.goto(site_url + "/add")
    page.fill("#id", credential_id)
    page.fill("#product", "Microsoft CSP (NCE)")
    page.fill("#marketplace", "US")
    page.fill("#tenant_id", seed.PARTNER_TENANT_DOMAIN)
    if shot:
        screenshot(page, shot)
    button = "Save and sign in with Microsoft" if sign_in_now else "Save only"
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def consent_in_browser(page: Page, site_url: str, credential_id: str) -> None:
    add_credential(page, site_url, credential_id)
    sign_in(page, site_url, seed.PARTNER_ADMIN_UPN)
    expect(page.locator("h1")).to_have_text("Consent granted")


def assert_no_token_anywhere(reader, credential_id: str, site, *pages: Page) -> None:
    tokens = [reader.vault.read_token(credential_id, v.version)[0]
              for v in reader.versions(credential_id) if v.enabled]
    assert tokens
    secrets = [*tokens, reader.settings.cpv_client_secret]
    output = "\n".join(line for line in site.lines if "(one-time link)" not in line)
    assert "code=" not in output and "token=" not in output and "state=" not in output
    assert not re.search(r"/invite/(?!\[redacted\])", output)
    for secret in secrets:
        assert secret not in output
        for page in pages:
            assert secret not in page.content()
            assert secret not in page.url
            for cookie in page.context.cookies():
                assert secret not in cookie["value"]


def test_operator_adds_a_credential_and_an_admin_consents_until_it_is_active(
        operator, consent_site, vault_reader):
    credential_id = unique_id("e2e")
    add_credential(operator, consent_site.url, credential_id, shot="add-credentials")
    assert operator.url.startswith(vault_reader.settings.authority_host)
    assert "prompt=select_account" in operator.url
    sign_in(operator, consent_site.url, seed.PARTNER_ADMIN_UPN, screenshots=True)

    expect(operator.locator("h1")).to_have_text("Consent granted")
    latest = vault_reader.versions(credential_id)[0]
    expect(operator.locator(".result-card__statement")).to_have_text(
        f"Consent granted; the refresh token of {credential_id} is stored in Key Vault and "
        f"{credential_id} is active.")
    # consumers are handed the URL of the newest token, not of this version
    expect(operator.locator(".secret-id code")).to_have_text(
        vault_reader.get_credential(credential_id).secret_id)
    assert latest.version not in operator.content()
    screenshot(operator, "consent-granted")

    operator.get_by_role("link", name=f"Open {credential_id}").click()
    expect(operator.locator("h1 .badge")).to_have_text("Active")
    secret_id = vault_reader.get_credential(credential_id).secret_id
    expect(operator.locator(".secret-id code")).to_have_text(secret_id)
    operator.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                       origin=consent_site.url)
    copy = operator.locator(".secret-id").get_by_role("button", name="Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert operator.evaluate("navigator.clipboard.readText()") == secret_id
    screenshot(operator, "credential-detail")

    operator.goto(consent_site.url + "/")
    screenshot(operator, "credentials")
    # the shared devstack holds many test credentials: find ours with the search box
    operator.get_by_label("Search").fill(credential_id)
    operator.get_by_role("button", name="Apply").click()
    row = operator.locator(f"tr[data-credential='{credential_id}']")
    expect(row.locator(".badge")).to_have_text("Active")
    expect(row.locator("[data-copy]")).to_have_attribute("data-copy", secret_id)
    assert_no_token_anywhere(vault_reader, credential_id, consent_site, operator)


def test_invite_link_opened_in_another_browser_completes_consent_once(
        operator, second_context, consent_site, vault_reader):
    credential_id = unique_id("e2e-inv")
    add_credential(operator, consent_site.url, credential_id, sign_in_now=False)
    expect(operator.locator(".callout__title")).to_have_text("Waiting for consent")
    operator.get_by_role("link", name="Send an invite link").click()
    operator.get_by_role("button", name="Create link").click()
    link = operator.locator(".secret-id code").inner_text()
    assert link.startswith(consent_site.url + "/invite/")
    screenshot(operator, "invite-link")

    admin = second_context.new_page()
    admin.goto(link)
    expect(admin.locator("h1")).to_contain_text("Allow Partner Center access")
    expect(admin.get_by_text("Global Administrator").first).to_be_visible()
    screenshot(admin, "invite-landing")
    with admin.expect_navigation():
        admin.get_by_role("button", name="Continue to Microsoft sign-in").click()
    sign_in(admin, consent_site.url, seed.PARTNER_ADMIN_UPN)
    expect(admin.locator("h1")).to_have_text("Consent granted")
    expect(admin.get_by_text("You can close this window")).to_be_visible()
    assert admin.locator(".secret-id").count() == 0  # the vault URL is for operators

    operator.goto(f"{consent_site.url}/credentials/{credential_id}")
    expect(operator.locator("h1 .badge")).to_have_text("Active")
    admin.goto(link)
    expect(admin.locator("h1")).to_have_text("This consent link is not valid")
    assert_no_token_anywhere(vault_reader, credential_id, consent_site, operator, admin)


def test_validate_generate_token_and_rotate_work_from_the_detail_page(
        operator, consent_site, vault_reader):
    credential_id = unique_id("e2e-act")
    consent_in_browser(operator, consent_site.url, credential_id)
    operator.goto(f"{consent_site.url}/credentials/{credential_id}")

    operator.get_by_role("button", name="Validate").click()
    expect(operator.locator(".alert--success")).to_contain_text(
        "Validation passed: the refresh token works with MFA and Partner Center answered as "
        f"{seed.PARTNER_TENANT_NAME}.")
    expect(operator.locator(".result--ok").first).to_have_text("Passed")
    screenshot(operator, "credential-validated")

    before = len(vault_reader.versions(credential_id))
    with operator.expect_navigation():
        operator.get_by_role("button", name="Generate token").click()
    assert "prompt=consent" in operator.url
    sign_in(operator, consent_site.url, seed.PARTNER_ADMIN_UPN)
    expect(operator.locator("h1")).to_have_text("Consent granted")
    assert len(vault_reader.versions(credential_id)) == before + 1

    operator.goto(f"{consent_site.url}/credentials/{credential_id}")
    operator.get_by_role("button", name="Rotate now").click()
    expect(operator.locator(".alert--success")).to_contain_text("Rotated:")
    assert len(vault_reader.versions(credential_id)) == before + 2
    expect(operator.locator("table tbody tr")).to_have_count(before + 2)


def test_consent_without_mfa_shows_what_to_do(operator, consent_site, vault_reader, devstack):
    credential_id = unique_id("e2e-nomfa")
    add_credential(operator, consent_site.url, credential_id)
    # no Conditional Access in the tenant: Entra issues a password-only token, the broker
    # refuses it
    with devstack.mfa_not_required():
        sign_in(operator, consent_site.url, seed.PARTNER_NOMFA_UPN)
    expect(operator.locator("h1")).to_have_text("Multi-factor authentication is required")
    expect(operator.locator(".what-to-do")).to_contain_text("Register an MFA method")
    screenshot(operator, "consent-failed-no-mfa")
    assert vault_reader.get_credential(credential_id).stored_status == "pending-consent"


def test_visitors_are_sent_to_sign_in_and_used_links_are_refused(context, consent_site):
    page = context.new_page()
    page.goto(consent_site.url + "/")
    assert re.search(r"/auth/login\?next=/$", page.url)
    expect(page.locator("h1")).to_have_text("Operator sign-in")
    screenshot(page, "operator-sign-in")
    response = page.goto(consent_site.url + "/auth/local?token=" + "x" * 43)
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("This sign-in link cannot be used")
    assert page.goto(consent_site.url + "/healthz").status == 200
