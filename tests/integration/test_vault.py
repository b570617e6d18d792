"""broker.vault against devstack's Key Vault, through DefaultAzureCredential, over HTTPS."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.identity import DefaultAzureCredential

from broker.credentials import Credential, CredentialSpec, Source, Status
from broker.errors import (
    BrokerError,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.logs import redact
from broker.settings import load_settings
from broker.vault import (
    CS_CONTENT_TYPE,
    PLACEHOLDER_VALUE,
    RT_CONTENT_TYPE,
    Vault,
    pooled_transport,
)
from tests.support.devstack import environment, running_devstack

APP = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
CONTRACT_TAGS = {"credential", "environment", "product", "marketplace", "tenant_id", "client_id",
                 "source", "obtained_at", "status", "consented_by", "mfa"}


def unique(prefix: str = "vault") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fake_token() -> str:
    return "0.AXYZ" + uuid.uuid4().hex * 3


@pytest.fixture
def settings(devstack, tmp_path):
    return load_settings({**os.environ, "BROKER_STATE_DIR": str(tmp_path)}, dotenv=False)


@pytest.fixture
def vault(settings) -> Vault:
    return Vault(settings)


def register(vault: Vault, *, client_id: str | None = None) -> Credential:
    now = datetime.now(UTC)
    secret, expiry = ("s3cret-app-value", date.today() + timedelta(days=300)) if client_id \
        else (None, None)
    spec = CredentialSpec(unique(), "test", "Billing", "US", "contoso.example", client_id,
                          secret, expiry).validated(now=now)
    vault.create_placeholder(spec, now=now)
    return vault.get_credential(spec.id)


def consent(vault: Vault, credential: Credential, token: str | None = None, *,
            source: Source = Source.CONSENT, obtained_at: datetime | None = None, **kw):
    return vault.write_token(credential, token or fake_token(), source=source,
                             obtained_at=obtained_at or datetime.now(UTC),
                             consented_by="admin@contoso.example", mfa=True, **kw)


def test_registered_credential_is_a_disabled_placeholder(vault):
    credential = register(vault)
    latest = credential.latest
    assert credential.stored_status is Status.PENDING_CONSENT
    assert not latest.enabled and latest.is_placeholder and latest.source is Source.CONSENT
    assert set(latest.tags) >= CONTRACT_TAGS and latest.tags["client_id"] == "cpv"
    assert credential.is_cpv and credential.secret_id == vault.secret_id(credential.id)
    with pytest.raises(NeedsConsent):
        vault.read_token(credential.id)
    with pytest.raises(NeedsConsent):
        vault.read_token(credential.id, latest.version)


def test_written_token_carries_the_layout_and_reads_back(vault, settings):
    credential = register(vault)
    token, obtained = fake_token(), datetime.now(UTC)
    written = consent(vault, credential, token, obtained_at=obtained,
                      roles=["Global Administrator", "Admin Agent"])
    assert written.enabled and written.secret_id == vault.secret_id(credential.id,
                                                                     written.version)
    assert written.not_before == obtained.replace(microsecond=0)
    assert written.expires_on == (obtained + timedelta(days=settings.token_lifetime_days)) \
        .replace(microsecond=0)
    assert written.obtained_at == obtained
    assert written.roles == ("Global Administrator", "Admin Agent")
    assert (written.source, written.status, written.mfa) == (Source.CONSENT, Status.ACTIVE, True)
    secret = vault.client.get_secret("rt-" + credential.id)
    assert secret.properties.content_type == RT_CONTENT_TYPE and secret.value == token
    assert vault.read_token(credential.id) == (token, written)
    assert token in redact.registered()


def test_versions_are_newest_first_and_old_tokens_stay_readable(vault):
    credential = register(vault)
    first_token, second_token = fake_token(), fake_token()
    first = consent(vault, credential, first_token)
    second = consent(vault, credential, second_token, source=Source.ROTATION)
    versions = vault.versions(credential.id)
    assert [v.version for v in versions[:2]] == [second.version, first.version]
    assert versions[-1].is_placeholder and len(versions) == 3
    assert vault.latest_version(credential.id).version == second.version
    assert vault.read_token(credential.id, first.version)[0] == first_token
    assert vault.get_credential(credential.id).latest.source is Source.ROTATION


def test_update_tags_merges_and_deletes_even_on_a_disabled_version(vault):
    credential = register(vault)
    written = consent(vault, credential, extra_tags={"invite": "inv-1"})
    updated = vault.update_tags(credential.id, written.version, status="needs-consent",
                                invite=None, validation="revoked")
    assert updated.status is Status.NEEDS_CONSENT and updated.tags["validation"] == "revoked"
    assert "invite" not in updated.tags and updated.tags["credential"] == credential.id
    disabled = vault.set_enabled(credential.id, written.version, False)
    assert not disabled.enabled and disabled.tags == updated.tags
    tagged = vault.update_tags(credential.id, written.version, validation="ok")
    assert tagged.tags["validation"] == "ok" and not tagged.enabled
    with pytest.raises(NeedsConsent):
        vault.read_token(credential.id)
    with pytest.raises(CredentialNotFound):
        vault.update_tags(credential.id, "0" * 32, status="error")


def test_own_app_client_secret_is_stored_with_its_expiry(vault):
    credential = register(vault, client_id=APP)
    assert credential.client_id == APP and credential.secret_expires_on is None
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=200)
    vault.write_client_secret(credential.id, "app-secret-1-abcdef", expires)
    vault.write_client_secret(credential.id, "app-secret-2-abcdef", expires + timedelta(days=1))
    assert vault.read_client_secret(credential.id) == "app-secret-2-abcdef"
    assert vault.get_credential(credential.id).secret_expires_on == expires + timedelta(days=1)
    stored = vault.client.get_secret("cs-" + credential.id)
    assert stored.properties.content_type == CS_CONTENT_TYPE
    assert "app-secret-2-abcdef" in redact.registered()


def test_cpv_credential_has_no_client_secret(vault):
    credential = register(vault)
    with pytest.raises(CredentialNotFound, match="No client secret"):
        vault.read_client_secret(credential.id)


def test_listing_is_one_paged_listing_without_values(settings):
    seen: list[tuple[str, str]] = []
    vault = Vault(settings, raw_request_hook=lambda r: seen.append(
        (r.http_request.method, urlsplit(r.http_request.url).path)))
    mine = [register(vault) for _ in range(3)]
    consent(vault, mine[0])
    seen.clear()
    listed = {c.id: c for c in vault.list_credentials()}
    assert {m.id for m in mine} <= set(listed)
    assert {(method, path) for method, path in seen} == {("GET", "/secrets")}
    assert listed[mine[0].id].stored_status is Status.ACTIVE
    assert listed[mine[1].id].stored_status is Status.PENDING_CONSENT
    assert listed[mine[0].id].latest.version is None


def test_missing_credential_is_credential_not_found(vault):
    ghost = unique("ghost")
    for call in (vault.get_credential, vault.versions, vault.read_token, vault.delete_credential):
        with pytest.raises(CredentialNotFound) as err:
            call(ghost)
        assert err.value.credential_id == ghost


def test_deleted_credential_is_gone_and_its_id_cannot_be_reused_while_recoverable(vault):
    credential = register(vault, client_id=APP)
    vault.write_client_secret(credential.id, "app-secret-3-abcdef",
                              datetime.now(UTC) + timedelta(days=30))
    vault.delete_credential(credential.id)
    with pytest.raises(CredentialNotFound):
        vault.get_credential(credential.id)
    assert credential.id not in {c.id for c in vault.list_credentials()}
    spec = CredentialSpec(credential.id, "test", "P", "US", "contoso.example")
    with pytest.raises(InvalidInput) as err:
        vault.create_placeholder(spec, now=datetime.now(UTC))
    assert "recovered" in err.value.errors["id"]


def test_write_refuses_a_read_back_that_differs(vault, monkeypatch):
    credential = register(vault)
    real_get = vault.client.get_secret

    def tampered(name, version=None, **kw):
        secret = real_get(name, version, **kw)
        secret._value = secret.value + "-changed"
        return secret

    monkeypatch.setattr(vault.client, "get_secret", tampered)
    with pytest.raises(BrokerError, match="differs") as err:
        consent(vault, credential, "0.Aplanted" + uuid.uuid4().hex)
    assert "0.Aplanted" not in str(err.value) + err.value.hint


def test_placeholder_value_is_never_stored_as_a_token(vault):
    credential = register(vault)
    with pytest.raises(InvalidInput):
        consent(vault, credential, PLACEHOLDER_VALUE)


class _ForgedToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("forged.token.value", int(datetime.now(UTC).timestamp()) + 3600)


def test_refused_identity_gets_a_hint_about_the_role_or_credential(settings):
    vault = Vault(settings, credential=_ForgedToken())
    with pytest.raises(BrokerError) as err:
        vault.list_credentials()
    assert "DefaultAzureCredential" in err.value.hint
    assert "forged.token.value" not in str(err.value)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A private devstack whose vault we may break (the session one is shared)."""
    with running_devstack(tmp_path_factory.mktemp("faulty")) as stack, environment(stack.env):
        yield stack


@pytest.mark.parametrize("status", [503, 429])
def test_vault_faults_are_transient_failures(faulty, tmp_path, status):
    settings = load_settings({**faulty.env, "BROKER_STATE_DIR": str(tmp_path)}, dotenv=False)
    vault = Vault(settings, credential=DefaultAzureCredential(), retry_total=0)
    vault.list_credentials()  # authenticate before the faults start
    faulty.faults("vault", status, 1.0)
    try:
        with pytest.raises(TransientFailure) as err:
            vault.list_credentials()
    finally:
        faulty.faults("vault", status, 0.0)
    assert str(status) in str(err.value)
    if status == 429:
        assert err.value.retry_after is not None


class LosesAnswers(HttpTransport):
    """The real transport, except that the answers to the first `lose` secret creates (PUT)
    are dropped after Key Vault served them, as when a network cuts the response; and with
    `reads_fail`, every later request fails to connect."""

    def __init__(self, lose: int = 1, *, reads_fail: bool = False) -> None:
        self.inner = pooled_transport(4)
        self.lose = lose
        self.reads_fail = reads_fail
        self.lost = 0

    def send(self, request, **kwargs):
        if self.reads_fail and self.lost:
            raise ServiceRequestError("[Errno 111] Connection refused")
        response = self.inner.send(request, **kwargs)
        if request.method == "PUT" and "/secrets/" in request.url and self.lost < self.lose \
                and response.status_code == 200:
            self.lost += 1
            raise ServiceResponseError("('Connection aborted.', RemoteDisconnected('Remote end "
                                       "closed connection without response'))")
        return response

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *args):
        self.inner.__exit__(*args)


def test_a_write_whose_answer_was_lost_is_found_committed_and_read_back(settings):
    transport = LosesAnswers(0)
    vault = Vault(settings, transport=transport)
    credential = register(vault)
    transport.lose = 1
    token = fake_token()
    written = consent(vault, credential, token)
    assert written.version == vault.latest_version(credential.id).version
    assert vault.read_token(credential.id)[0] == token
    # one version from the consent, besides the placeholder: nothing written twice
    assert transport.lost == 1 and len(vault.versions(credential.id)) == 2


def test_a_lost_answer_that_cannot_be_checked_says_it_may_have_been_stored(settings):
    transport = LosesAnswers(0, reads_fail=True)
    vault = Vault(settings, transport=transport, retry_total=0)
    credential = register(vault)
    transport.lose = 1
    with pytest.raises(TransientFailure) as lost:
        consent(vault, credential)
    assert lost.value.maybe_stored
    assert "may or may not have been stored" in str(lost.value)
    assert "Open the credential" in lost.value.hint
    assert settings.vault_url.rstrip("/") in str(lost.value)


def test_an_unreachable_vault_is_named_by_its_url_and_the_cause(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    settings = load_settings({**os.environ, "BROKER_STATE_DIR": str(tmp_path),
                              "BROKER_VAULT_URL": f"https://127.0.0.1:{port}/"}, dotenv=False)
    vault = Vault(settings, retry_total=0)
    with pytest.raises(TransientFailure) as down:
        vault.list_credentials()
    message = str(down.value)
    assert message == f"Key Vault at https://127.0.0.1:{port} could not be reached: " \
                      "Connection refused."
    assert "ServiceRequestError" not in message and "BROKER_VAULT_URL" in down.value.hint
    assert "will be retried" not in down.value.hint
