"""The consent site on the real Broker against devstack: forms, the emulator's sign-in pages
(posted without a browser), the callback, invites and actions, with no secret ever shown."""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from consent_web import create_app
from devstack import seed
from tests.support.broker import make_broker, unique_id
from tests.support.browserless import complete_sign_in

CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


class RecordingClient(FlaskClient):
    """Keeps every response so a test can prove none of them carried a secret."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        self.seen.append(response)
        return response


class Site:
    def __init__(self, broker):
        self.broker = broker
        self.app = create_app({"BROKER": broker, "TESTING": True})
        self.app.test_client_class = RecordingClient
        self.client = self.app.test_client()

    def visitor(self) -> Site:
        """Another browser on the same site (no operator session)."""
        other = Site.__new__(Site)
        other.broker, other.app = self.broker, self.app
        other.client = self.app.test_client()
        return other

    def sign_in(self) -> None:
        token = self.app.extensions["local_sign_in"].issue()
        assert self.client.get(f"/auth/local?token={token}").status_code == 302

    def post(self, path: str, data: dict | None = None, *, form_page: str = "/"):
        token = CSRF.search(self.client.get(form_page).text).group(1)
        return self.client.post(path, data={"csrf_token": token, **(data or {})})

    def callback(self, redirect_url: str):
        parts = urlsplit(redirect_url)
        assert parts.path == "/consent/callback"
        return self.client.get(f"{parts.path}?{parts.query}")

    def flashed(self, path: str) -> str:
        match = re.search(r'class="alert alert--\w+" role="\w+">([^<]+)<',
                          self.client.get(path).text)
        return match.group(1).replace("&#39;", "'") if match else ""

    def texts(self) -> list[str]:
        """Every body and header this browser saw, and its cookies as a browser reads them."""
        found = [r.get_data(as_text=True) + str(r.headers) for r in self.client.seen]
        name = self.app.config["SESSION_COOKIE_NAME"]
        cookie = self.client.get_cookie(name)
        if cookie is not None:
            found.append(cookie.value + _decoded_session(cookie.value))
        return found


def _decoded_session(value: str) -> str:
    import base64
    import zlib

    payload = value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(data) if value.startswith(".") else data).decode()


def assert_never_shown(secrets: list[str], *sites: Site, logs: str = "") -> None:
    assert all(secrets), "every secret must be a real value"
    for site in sites:
        for text in site.texts():
            for secret in secrets:
                assert secret not in text
    for secret in secrets:
        assert secret not in logs


def all_tokens(broker, credential_id: str) -> list[str]:
    return [broker.vault.read_token(credential_id, v.version)[0]
            for v in broker.versions(credential_id) if v.enabled]


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


@pytest.fixture
def site(broker) -> Site:
    site = Site(broker)
    site.sign_in()
    return site


def add_form(credential_id: str, **overrides) -> dict[str, str]:
    form = {"id": credential_id, "environment": "test", "product": "Microsoft CSP (NCE)",
            "marketplace": "US", "tenant_id": seed.PARTNER_TENANT_DOMAIN,
            "next_step": "consent"}
    form.update(overrides)
    return form


def test_operator_adds_a_cpv_credential_and_the_admin_consents(site, broker, caplog):
    caplog.set_level(logging.INFO)
    credential_id = unique_id("web")
    saved = site.post("/add", add_form(credential_id), form_page="/add")
    assert saved.status_code == 303
    auth_url = saved.headers["Location"]
    assert auth_url.startswith(broker.settings.authority_host)
    assert parse_qs(urlsplit(auth_url).query)["redirect_uri"] == \
        ["http://localhost:47400/consent/callback"]

    redirect = complete_sign_in(auth_url, seed.PARTNER_ADMIN_UPN)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    finished = site.callback(redirect)
    assert finished.status_code == 303 and finished.headers["Location"] == "/consent/done"

    done = site.client.get("/consent/done").text
    latest = broker.versions(credential_id)[0]
    assert f"the refresh token of <strong>{credential_id}</strong> is stored" in done
    # consumers get the URL that always resolves to the newest version, not this one's
    assert f'data-copy="{broker.vault.secret_id(credential_id)}"' in done
    assert latest.version not in done
    assert broker.get_credential(credential_id).stored_status == "active"

    listing = site.client.get(f"/?q={credential_id}").text  # one page of many in this devstack
    row = listing[listing.index(f'data-credential="{credential_id}"'):]
    assert "badge--active" in row[:row.index("</tr>")]
    detail = site.client.get(f"/credentials/{credential_id}").text
    assert broker.get_credential(credential_id).secret_id in detail
    assert seed.PARTNER_ADMIN_UPN in detail and "Admin Agent" in detail

    assert_never_shown(
        [*all_tokens(broker, credential_id), broker.settings.cpv_client_secret, code],
        site, logs=caplog.text,
    )


def test_own_app_credential_keeps_its_client_secret_off_every_page(site, broker, caplog):
    caplog.set_level(logging.INFO)
    credential_id = unique_id("web-own")
    expires = (datetime.now(UTC) + timedelta(days=200)).date().isoformat()
    saved = site.post("/add", add_form(
        credential_id, client_id=seed.PARTNER_APP_ID, client_secret=seed.PARTNER_APP_SECRET,
        secret_expires_on=expires), form_page="/add")
    assert saved.status_code == 303
    site.callback(complete_sign_in(saved.headers["Location"], seed.PARTNER_ADMIN_UPN))
    assert broker.get_credential(credential_id).stored_status == "active"
    assert broker.vault.read_client_secret(credential_id) == seed.PARTNER_APP_SECRET

    detail = site.client.get(f"/credentials/{credential_id}").text
    assert "Partner's own app" in detail and seed.PARTNER_APP_ID in detail
    assert re.search(r"\b(199|200) days\b", detail)
    edit = site.client.get(f"/credentials/{credential_id}/edit").text
    assert "Leave blank to keep the stored secret." in edit
    assert_never_shown(
        [*all_tokens(broker, credential_id), seed.PARTNER_APP_SECRET,
         broker.settings.cpv_client_secret],
        site, logs=caplog.text,
    )


def test_invalid_form_stores_nothing_in_the_vault(site, broker):
    credential_id = unique_id("web-bad")
    response = site.post("/add", add_form(credential_id, tenant_id="not a tenant"),
                         form_page="/add")
    assert response.status_code == 400 and "Nothing was saved" in response.text
    assert credential_id not in {c.id for c in broker.list_credentials()}


@pytest.mark.parametrize(("user", "consent", "status", "title"), [
    (seed.PARTNER_NOMFA_UPN, True, 403, "Multi-factor authentication is required"),
    (seed.PARTNER_USER_UPN, True, 403, "The Admin Agent role is missing"),
    (seed.PARTNER_ADMIN_UPN, False, 400, "Consent was cancelled"),
])
def test_failed_consents_show_what_to_do_and_store_nothing(site, broker, devstack, user, consent,
                                                           status, title):
    credential_id = unique_id("web-fail")
    site.post("/add", add_form(credential_id, next_step="save"), form_page="/add")
    detail = f"/credentials/{credential_id}"
    # "Generate token" asks with prompt=consent, so the consent page shows even when the
    # tenant consented before (another test's admin) and can be cancelled
    started = site.post(f"{detail}/generate-token", form_page=detail)
    # without Conditional Access a user with no MFA method gets a password-only token, which
    # the broker refuses
    with devstack.mfa_not_required():
        response = site.callback(complete_sign_in(started.headers["Location"], user,
                                                  consent=consent))
    assert response.status_code == status
    assert title in response.text and "What to do" in response.text
    assert broker.get_credential(credential_id).stored_status == "pending-consent"
    assert not [v for v in broker.versions(credential_id) if v.enabled]


def test_invite_link_completes_consent_in_another_browser_once(site, broker, caplog):
    caplog.set_level(logging.INFO)
    credential_id = unique_id("web-inv")
    site.post("/add", add_form(credential_id, next_step="save"), form_page="/add")
    page = site.post(f"/credentials/{credential_id}/invite", {"send": "link"},
                     form_page=f"/credentials/{credential_id}/invite")
    link = re.search(r'data-copy="(http://localhost:47400/invite/[^"]+)"', page.text).group(1)
    path = urlsplit(link).path

    admin = site.visitor()
    landing = admin.client.get(path)
    assert landing.status_code == 200 and "Continue to Microsoft sign-in" in landing.text
    started = admin.post(path, form_page=path)
    assert started.status_code == 303
    finished = admin.callback(complete_sign_in(started.headers["Location"],
                                               seed.PARTNER_ADMIN_UPN))
    assert finished.status_code == 303
    done = admin.client.get("/consent/done").text
    assert "Consent granted. Thank you." in done
    assert broker.get_credential(credential_id).stored_status == "active"

    again = site.visitor().client.get(path)
    assert again.status_code == 404 and "This consent link is not valid" in again.text
    assert_never_shown([*all_tokens(broker, credential_id), broker.settings.cpv_client_secret],
                       site, admin, logs=caplog.text)


def test_forged_invite_link_is_a_404(site):
    response = site.visitor().client.get("/invite/eyJjIjoiYSIsImkiOiJiIiwiZSI6OX0.forged")
    assert response.status_code == 404


def test_validate_generate_token_and_rotate_from_the_detail_page(site, broker):
    credential_id = unique_id("web-act")
    saved = site.post("/add", add_form(credential_id), form_page="/add")
    site.callback(complete_sign_in(saved.headers["Location"], seed.PARTNER_ADMIN_UPN))
    detail = f"/credentials/{credential_id}"

    assert site.post(f"{detail}/validate", form_page=detail).status_code == 303
    assert site.flashed(detail).startswith("Validation passed: the refresh token works with MFA")
    assert broker.get_credential(credential_id).last_validation == "ok"

    before = len(broker.versions(credential_id))
    regenerate = site.post(f"{detail}/generate-token", form_page=detail)
    assert regenerate.status_code == 303
    assert parse_qs(urlsplit(regenerate.headers["Location"]).query)["prompt"] == ["consent"]
    assert site.callback(complete_sign_in(regenerate.headers["Location"],
                                          seed.PARTNER_ADMIN_UPN)).status_code == 303
    assert len(broker.versions(credential_id)) == before + 1

    assert site.post(f"{detail}/rotate", form_page=detail).status_code == 303
    assert site.flashed(detail).startswith("Rotated: the refresh token was redeemed")
    assert len(broker.versions(credential_id)) == before + 2
    assert broker.versions(credential_id)[0].source == "rotation"


def test_editing_the_tenant_needs_consent_again_and_remove_deletes(site, broker):
    credential_id = unique_id("web-edit")
    saved = site.post("/add", add_form(credential_id), form_page="/add")
    site.callback(complete_sign_in(saved.headers["Location"], seed.PARTNER_ADMIN_UPN))
    edit = f"/credentials/{credential_id}/edit"
    response = site.post(edit, add_form(credential_id, tenant_id=seed.PARTNER_TENANT_ID,
                                        next_step="save"), form_page=edit)
    assert response.status_code == 303
    credential = broker.get_credential(credential_id)
    assert credential.stored_status == "pending-consent"
    assert not [v for v in broker.versions(credential_id) if v.enabled]
    assert "Waiting for consent" in site.client.get(f"/credentials/{credential_id}").text

    remove = f"/credentials/{credential_id}/remove"
    assert site.post(remove, form_page=remove).status_code == 303
    assert site.client.get(f"/credentials/{credential_id}").status_code == 404


def test_expired_invite_link_is_refused_before_any_sign_in(site, broker):
    credential_id = unique_id("web-exp")
    site.post("/add", add_form(credential_id, next_step="save"), form_page="/add")
    expired = broker.invites.create(credential_id, 1, now=datetime.now(UTC) - timedelta(hours=2))
    path = urlsplit(expired.url).path
    visitor = site.visitor()
    landing = visitor.client.get(path)
    assert landing.status_code == 404
    assert "This consent link is not valid" in landing.text
    assert "it has expired" in landing.text  # the broker's reason, under "Technical details"


def test_the_detail_page_pages_through_a_long_history(site, broker):
    from tests.support.broker import spec

    credential_id = unique_id("web-paged")
    added = broker.add_credential(spec(credential_id))
    for _ in range(29):  # 30 versions: more than one page
        broker.vault.create_placeholder(spec(credential_id), now=added.latest.obtained_at)
    detail = f"/credentials/{credential_id}"

    first = site.client.get(detail)
    assert first.status_code == 200 and first.text.count('data-label="Version"') == 25
    link = re.search(r'href="([^"]*\?versions=[^"]+)">More versions', first.text)
    assert link
    rest = site.client.get(html.unescape(link.group(1)))
    assert rest.status_code == 200 and rest.text.count('data-label="Version"') == 5
    assert "More versions" not in rest.text
    # a page link that is not this credential's own listing is bad input, not a fetch
    forged = site.client.get(detail, query_string={"versions": "https://attacker.example/x"})
    assert forged.status_code == 400
