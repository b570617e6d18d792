"""Go through devstack's Entra pages in the browser as a person would: sign in, type the MFA
code the emulator shows in `#dev-otp`, tick "Consent on behalf of your organization", accept."""

from __future__ import annotations

from playwright.sync_api import Page

from devstack import seed
from tests.e2e.artifacts import screenshot

MAX_PAGES = 8
SHOTS = {"login-form": "entra-sign-in", "mfa-form": "entra-mfa", "consent-form": "entra-consent"}


def sign_in(page: Page, site_url: str, username: str, *, consent: bool = True,
            screenshots: bool = False) -> None:
    """From the authority's first page until the browser is back on the consent site."""
    for _ in range(MAX_PAGES):
        page.wait_for_load_state()
        if page.url.startswith(site_url):
            return
        form = page.locator("form").first
        form.wait_for()
        form_id = form.get_attribute("id") or ""
        if screenshots and form_id in SHOTS:
            screenshot(page, SHOTS[form_id])
        with page.expect_navigation():
            if form_id == "login-form":
                page.fill("#username", username)
                page.fill("#password", seed.PASSWORD)
                page.click("#idSIButton9")
            elif form_id == "mfa-form":
                page.fill("#otp", page.inner_text("#dev-otp").strip())
                page.click("#idSubmit_SAOTCC_Continue")
            elif form_id == "consent-form":
                if consent:
                    page.check("#consent_on_behalf")
                    page.click("#idBtn_Accept")
                else:
                    page.click("#idBtn_Back")
            elif form_id == "select-account-form":
                page.click("button[name=account][value=other]")
            else:
                raise AssertionError(f"unexpected page at the authority: {page.url}\n"
                                     f"{page.inner_text('body')[:500]}")
    raise AssertionError(f"still at the authority after {MAX_PAGES} pages: {page.url}")
