"""An in-memory stand-in for the `Broker` facade, for the consent site's unit tests.

It sits at the seam the site calls (API.md's facade) and builds the broker's own dataclasses,
validation and errors, so the site's pages render exactly what the real Broker returns. The
real Broker against devstack is exercised by tests/integration/test_web_*.py and tests/e2e.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker.consent import ConsentResult, ConsentStart
from broker.credentials import (
    Credential,
    CredentialSpec,
    Status,
    TokenVersion,
    format_instant,
    secret_expiry_instant,
)
from broker.errors import ConsentFailed, CredentialNotFound, InvalidInput
from broker.invites import Invite
from broker.rotation import RotationResult
from broker.settings import Settings
from broker.validation import ValidationReport

VAULT = "https://unit.vault.azure.net/"
AUTHORITY = "https://login.example.test"
CPV_ID = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
# values that must never reach a page, a header or a cookie
CPV_SECRET = "cpv~SECRET-value-0123456789abcdefghij"
REFRESH_TOKEN = "0.AAAA-unit-refresh-token-VALUE-must-never-show"
SECRETS = (CPV_SECRET, REFRESH_TOKEN)


def unit_settings(**overrides) -> Settings:
    values = dict(
        vault_url=VAULT, authority_host=AUTHORITY, cpv_client_id=CPV_ID,
        cpv_client_secret=CPV_SECRET, public_url="http://localhost:47400",
        secret_key="unit-test-secret-key-" + "k" * 32,
        # signed-out sessions are recorded here in local development: one dir per site
        state_dir=Path(tempfile.mkdtemp(prefix="unit-site-")),
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class RecordingNotifier:
    enabled: bool = True
    events: list = field(default_factory=list)
    smtp_url: str | None = "smtp://mail.example"
    emails: list = field(default_factory=list)  # (event, recipients)

    def notify(self, event) -> None:
        self.events.append(event)

    def email(self, event, to=None) -> bool:
        self.emails.append((event, list(to or [])))
        return True


class FakeBroker:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or unit_settings()
        self.notifier = RecordingNotifier()
        self.versions_by_id: dict[str, list[TokenVersion]] = {}
        self.secret_expiry: dict[str, datetime] = {}
        self.client_secrets: dict[str, str] = {}
        self.open_invites: dict[str, str] = {}  # token -> credential id
        self.calls: list[tuple] = []
        self.fail: dict[str, Exception] = {}  # method name -> error to raise once
        self.validation_ok = True
        self.rotation_outcome = "rotated"

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise self.fail.pop(name)

    @property
    def notifications_enabled(self) -> bool:
        return self.notifier.enabled

    def notify(self, event) -> None:
        self.notifier.notify(event)

    @property
    def email_enabled(self) -> bool:
        return bool(self.notifier.smtp_url)

    def email(self, event, to=None) -> bool:
        return self.notifier.email(event, to)

    def current_invite(self, credential):
        return None

    # reading
    def list_credentials(self, environment=None, *, max_age=0.0):
        self._maybe_fail("list_credentials")
        found = [self.get_credential(cid) for cid in self.versions_by_id]
        return [c for c in found if environment in (None, c.environment)]

    def get_credential(self, credential_id):
        versions = self.versions_by_id.get(credential_id)
        if not versions:
            raise CredentialNotFound(credential_id)
        return Credential.from_latest(
            credential_id, versions[0], f"{VAULT}secrets/rt-{credential_id}",
            self.secret_expiry.get(credential_id),
        )

    def versions(self, credential_id):
        self.get_credential(credential_id)
        return list(self.versions_by_id[credential_id])

    def versions_page(self, credential_id, *, page_size=25, continuation=None):
        found = self.versions(credential_id)
        start = int(continuation or 0)
        rest = start + page_size
        return found[start:rest], (str(rest) if rest < len(found) else None)

    # registering
    def add_credential(self, spec: CredentialSpec):
        self.calls.append(("add_credential", spec.id))
        spec = spec.validated(now=datetime.now(UTC))
        if spec.id in self.versions_by_id:
            raise InvalidInput(errors={"id": f"A credential with id {spec.id!r} exists already."})
        self._store_spec(spec)
        self._push(spec.id, self._tags(spec, status=Status.PENDING_CONSENT), enabled=False)
        return self.get_credential(spec.id)

    def edit(self, credential_id, spec: CredentialSpec):
        from broker.service import EditResult

        before = self.get_credential(credential_id)
        credential = self.edit_credential(credential_id, spec)
        changed = (credential.tenant_id, credential.client_id) != (before.tenant_id,
                                                                  before.client_id)
        return EditResult(credential, "consent-needed" if changed else "unchanged")

    def edit_credential(self, credential_id, spec: CredentialSpec):
        self.calls.append(("edit_credential", credential_id))
        existing = self.get_credential(credential_id)
        spec = spec.validated(now=datetime.now(UTC), existing=existing)
        changed = spec.tenant_id != existing.tenant_id or spec.client_id != existing.client_id
        self._store_spec(spec)
        if changed:
            self.versions_by_id[credential_id] = [
                TokenVersion(v.version, v.secret_id, v.created_on, v.not_before, v.expires_on,
                             False, v.tags) for v in self.versions_by_id[credential_id]
            ]
            self._push(credential_id, self._tags(spec, status=Status.PENDING_CONSENT),
                       enabled=False)
        else:
            latest = self.versions_by_id[credential_id][0]
            latest.tags.update(environment=spec.environment, product=spec.product,
                               marketplace=spec.marketplace)
        return self.get_credential(credential_id)

    def remove_credential(self, credential_id):
        self.get_credential(credential_id)
        self.calls.append(("remove_credential", credential_id))
        del self.versions_by_id[credential_id]

    # consent
    def begin_consent(self, credential_id, redirect_uri, *, prompt_consent=False, scopes=None,
                      invite_token=None):
        self._maybe_fail("begin_consent")
        self.calls.append(("begin_consent", credential_id, redirect_uri, prompt_consent,
                           invite_token))
        self.get_credential(credential_id)
        if invite_token is not None:
            self.open_invite(invite_token)
        state = secrets.token_urlsafe(16)
        flow = {
            "state": state, "redirect_uri": redirect_uri, "code_verifier": "VERIFIER-" + state,
            "nonce": "n", "auth_uri": f"{AUTHORITY}/authorize?state={state}",
            "broker_credential": credential_id, "broker_invite": invite_token,
        }
        return ConsentStart(auth_url=flow["auth_uri"], flow=flow)

    def finish_consent(self, flow, params):
        self.calls.append(("finish_consent", flow.get("broker_credential"), dict(params)))
        if params.get("state") != flow.get("state"):
            raise ConsentFailed("state-mismatch")
        if params.get("error") == "access_denied":
            raise ConsentFailed("cancelled")
        if params.get("error_reason"):  # lets tests ask for any failure reason
            raise ConsentFailed(params["error_reason"])
        self._maybe_fail("finish_consent")
        credential_id = flow["broker_credential"]
        credential = self.get_credential(credential_id)
        if flow.get("broker_invite"):
            self.open_invites.pop(flow["broker_invite"], None)
        tags = dict(self.versions_by_id[credential_id][0].tags)
        tags.update(status=Status.ACTIVE.value, source="consent",
                    consented_by="admin@contoso.example", mfa="true",
                    roles="Global Administrator,Admin Agent")
        version = self._push(credential.id, tags, enabled=True)
        return ConsentResult(credential_id, version.version, version.secret_id,
                             "admin@contoso.example", ("Global Administrator", "Admin Agent"),
                             True)

    def create_invite(self, credential_id, ttl_hours=None):
        self.get_credential(credential_id)
        token = secrets.token_urlsafe(24)
        self.open_invites = {t: c for t, c in self.open_invites.items() if c != credential_id}
        self.open_invites[token] = credential_id
        return Invite(f"{self.settings.public_url}/invite/{token}", credential_id,
                      datetime.now(UTC) + timedelta(hours=24))

    def open_invite(self, token):
        if token not in self.open_invites:
            raise ConsentFailed("invite-invalid", "This consent link is not valid.")
        return self.get_credential(self.open_invites[token])

    # operations
    def validate(self, credential_id):
        self._maybe_fail("validate")
        self.calls.append(("validate", credential_id))
        latest = self.get_credential(credential_id).latest
        return ValidationReport(credential_id, self.validation_ok, datetime.now(UTC),
                                latest.version, self.validation_ok,
                                "Contoso Ltd" if self.validation_ok else None,
                                "Partner Center answered." if self.validation_ok
                                else "The token was refused.")

    def rotate(self, credential_id, *, expected_version=None, wait=0.0, older_than=None):
        self._maybe_fail("rotate")
        self.calls.append(("rotate", credential_id))
        latest = self.get_credential(credential_id).latest
        if self.rotation_outcome != "rotated":
            return RotationResult(credential_id, self.rotation_outcome, None, latest.version,
                                  "not due")
        tags = dict(latest.tags, source="rotation")
        version = self._push(credential_id, tags, enabled=True)
        return RotationResult(credential_id, "rotated", version.version, latest.version, "")

    # helpers
    def _store_spec(self, spec: CredentialSpec) -> None:
        if spec.client_id and spec.client_secret:
            self.client_secrets[spec.id] = spec.client_secret
            self.secret_expiry[spec.id] = secret_expiry_instant(spec.secret_expires_on)

    def _tags(self, spec: CredentialSpec, *, status: Status) -> dict[str, str]:
        return {
            "credential": spec.id, "environment": spec.environment, "product": spec.product,
            "marketplace": spec.marketplace, "tenant_id": spec.tenant_id,
            "client_id": spec.client_id or "cpv", "source": "consent", "status": status.value,
            "consented_by": "", "mfa": "false",
        }

    def _push(self, credential_id: str, tags: dict[str, str], *, enabled: bool) -> TokenVersion:
        now = datetime.now(UTC)
        version = secrets.token_hex(16)
        tags = dict(tags, obtained_at=format_instant(now))
        token_version = TokenVersion(
            version, f"{VAULT}secrets/rt-{credential_id}/{version}", now, now,
            now + timedelta(days=90), enabled, tags,
        )
        self.versions_by_id.setdefault(credential_id, []).insert(0, token_version)
        return token_version

    def seed(self, credential_id: str, *, environment: str = "test", active: bool = True,
             client_id: str | None = None) -> Credential:
        """A credential as it looks after a completed consent (or still pending)."""
        spec = CredentialSpec(
            id=credential_id, environment=environment, product="Microsoft CSP (NCE)",
            marketplace="US", tenant_id="contoso.example", client_id=client_id,
            client_secret="own-app-SECRET-value-xyz" if client_id else None,
            secret_expires_on=(datetime.now(UTC) + timedelta(days=200)).date()
            if client_id else None,
        )
        self.add_credential(spec)
        if active:
            flow = self.begin_consent(credential_id, "http://x/consent/callback").flow
            self.finish_consent(flow, {"state": flow["state"], "code": "c"})
        self.calls.clear()
        return self.get_credential(credential_id)


class Web:
    """The site on a FakeBroker with a test client, plus the moves every test needs."""

    def __init__(self, broker: FakeBroker | None = None, *, config: dict | None = None,
                 **settings_overrides):
        from consent_web import create_app

        self.broker = broker or FakeBroker(unit_settings(**settings_overrides))
        self.app = create_app({"BROKER": self.broker, "TESTING": True, **(config or {})})
        self.client = self.app.test_client()

    def sign_in(self) -> None:
        token = self.app.extensions["local_sign_in"].issue()
        response = self.client.get(f"/auth/local?token={token}")
        assert response.status_code == 302, response.status_code

    def csrf_token(self, path: str | None = None) -> str:
        import re

        page = self.client.get(path or "/auth/login")
        if page.status_code == 302:  # signed in: the sign-out form on the list carries one
            page = self.client.get("/")
        match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path or '/auth/login'}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf_token())
        return self.client.post(path, data=data, **kwargs)

    def session_text(self) -> str:
        """The session cookie decoded (it is signed, not encrypted): what a browser can read."""
        import base64
        import zlib

        cookie = self.client.get_cookie(self.app.config["SESSION_COOKIE_NAME"])
        if cookie is None:
            return ""
        value = cookie.value
        compressed = value.startswith(".")
        payload = value.lstrip(".").split(".")[0]
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return (zlib.decompress(data) if compressed else data).decode()


def assert_no_secrets(web: Web, response, extra: tuple[str, ...] = ()) -> None:
    """No secret in the body, any header (Location included) or any cookie."""
    secrets_ = (*SECRETS, *web.broker.client_secrets.values(), *extra)
    texts = [response.get_data(as_text=True), str(response.headers), web.session_text()]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
