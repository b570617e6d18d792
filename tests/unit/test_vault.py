"""The Key Vault layout as pure functions: tags, dates, listing, ids, host rules, error mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from azure.core import exceptions as az

from broker.azure_errors import KEY_VAULT_READER, LEASES, azure_errors, queue
from broker.credentials import Credential, CredentialSpec, Source, Status, TokenVersion
from broker.errors import (
    AccessDenied,
    BrokerError,
    Conflict,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    TransientFailure,
)
from broker.vault import (
    CS_CONTENT_TYPE,
    RT_CONTENT_TYPE,
    credential_id_from_secret_name,
    credentials_from_properties,
    is_azure_vault_host,
    merge_tags,
    newest_first,
    parse_secret_id,
    placeholder_tags,
    token_dates,
    token_tags,
    vault_errors,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
CONTRACT_TAGS = {"credential", "environment", "product", "marketplace", "tenant_id", "client_id",
                 "source", "obtained_at", "status", "consented_by", "mfa"}
V = "https://contoso-broker.vault.azure.net"


def props(name: str, *, content_type=RT_CONTENT_TYPE, tags=None, expires_on=None,
          version=None, enabled=True, created_on=NOW):
    ident = f"{V}/secrets/{name}" + (f"/{version}" if version else "")
    return SimpleNamespace(name=name, id=ident, version=version, content_type=content_type,
                           tags=tags or {}, expires_on=expires_on, not_before=None,
                           enabled=enabled, created_on=created_on)


def spec(**kw) -> CredentialSpec:
    base = {"id": "contoso", "environment": "test", "product": "Billing", "marketplace": "US",
            "tenant_id": "contoso.example"}
    return CredentialSpec(**{**base, **kw})


def cred(client_id=None) -> Credential:
    latest = TokenVersion.from_properties(props("rt-contoso", tags=placeholder_tags(
        spec(client_id=client_id), now=NOW), version="a" * 32))
    return Credential.from_latest("contoso", latest, f"{V}/secrets/rt-contoso")


def test_token_tags_carry_the_contract_tags():
    tags = token_tags(cred(), source=Source.ROTATION, obtained_at=NOW,
                      consented_by="admin@contoso.example", mfa=True,
                      roles=["Global Administrator", "Admin Agent"])
    assert set(tags) >= CONTRACT_TAGS
    assert tags["client_id"] == "cpv" and tags["source"] == "rotation"
    assert tags["status"] == "active" and tags["mfa"] == "true"
    assert tags["obtained_at"] == "2026-03-01T12:00:00.250000+00:00"
    assert tags["roles"] == "Global Administrator,Admin Agent"
    assert all(isinstance(v, str) for v in tags.values())


def test_own_app_credential_tags_its_client_id():
    app = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
    tags = token_tags(cred(app), source=Source.CONSENT, obtained_at=NOW, consented_by="",
                      mfa=False)
    assert tags["client_id"] == app and tags["mfa"] == "false" and "roles" not in tags


def test_extra_tags_merge_and_none_leaves_a_tag_out():
    tags = token_tags(cred(), source=Source.CONSENT, obtained_at=NOW, consented_by="a",
                      mfa=True, extra_tags={"validated_at": "x", "validation": "ok",
                                            "invite": None})
    assert tags["validation"] == "ok" and "invite" not in tags


def test_more_than_fifteen_tags_is_refused_before_any_call():
    with pytest.raises(BrokerError, match="at most 15 tags"):
        token_tags(cred(), source=Source.CONSENT, obtained_at=NOW, consented_by="a", mfa=True,
                   roles=["r"], extra_tags={f"t{i}": "x" for i in range(4)})


def test_naive_obtained_at_is_taken_as_utc_and_tag_values_fit():
    tags = token_tags(cred(), source=Source.IMPORT, obtained_at=NOW.replace(tzinfo=None),
                      consented_by="a", mfa=False, roles=["r" * 300])
    assert tags["obtained_at"].endswith("+00:00") and len(tags["roles"]) == 256


def test_placeholder_tags_say_pending_consent():
    tags = placeholder_tags(spec(), now=NOW)
    assert set(tags) >= CONTRACT_TAGS
    assert (tags["status"], tags["source"], tags["mfa"]) == ("pending-consent", "consent", "false")


def test_token_dates_are_obtained_and_obtained_plus_lifetime():
    assert token_dates(NOW, 90) == (NOW, NOW + timedelta(days=90))


def test_merge_tags_updates_adds_and_deletes():
    assert merge_tags({"a": "1", "b": "2"}, {"a": "x", "b": None, "c": 3}) == {"a": "x", "c": "3"}


def test_listing_builds_credentials_from_latest_properties_only():
    items = [
        props("rt-b", tags={"status": "active", "client_id": "cpv", "environment": "production"},
              expires_on=NOW + timedelta(days=80)),
        props("rt-a", tags={"status": "pending-consent", "client_id": "app-guid"}),
        props("cs-a", content_type=CS_CONTENT_TYPE, expires_on=NOW + timedelta(days=5)),
        props("rt-foreign", content_type="text/plain"),
        props("unrelated"),
    ]
    found = credentials_from_properties(items)
    assert [c.id for c in found] == ["a", "b"]
    a, b = found
    assert a.stored_status is Status.PENDING_CONSENT and a.client_id == "app-guid"
    assert a.secret_expires_on == NOW + timedelta(days=5)
    assert b.is_cpv and b.environment == "production" and b.secret_expires_on is None
    assert b.secret_id == f"{V}/secrets/rt-b" and b.latest.version is None


def test_versions_are_ordered_by_obtained_at_not_created():
    def v(obtained: str, created: datetime, ident: str):
        return TokenVersion.from_properties(props("rt-a", tags={"obtained_at": obtained},
                                                  version=ident, created_on=created))
    same_second = NOW.replace(microsecond=0)
    older = v("2026-03-01T12:00:00.100000+00:00", same_second, "1" * 32)
    newer = v("2026-03-01T12:00:00.900000+00:00", same_second, "2" * 32)
    assert newest_first([older, newer]) == [newer, older]


@pytest.mark.parametrize(("url", "name", "version"), [
    (f"{V}/secrets/rt-contoso", "rt-contoso", None),
    (f"{V}/secrets/rt-contoso/", "rt-contoso", None),
    (f"{V}/secrets/rt-contoso/{'a' * 32}", "rt-contoso", "a" * 32),
    ("https://localhost:8443/secrets/rt-x", "rt-x", None),
])
def test_secret_ids_are_parsed_by_the_sdk(url, name, version):
    ident = parse_secret_id(url)
    assert (ident.name, ident.version) == (name, version)


@pytest.mark.parametrize("url", [
    "", "rt-contoso", "https://vault", f"{V}/keys/rt-contoso", f"{V}/secrets",
    f"http://{V[8:]}/secrets/rt-contoso", f"{V}/secrets/a/b/c", f"{V}/secrets/rt-x?x=1",
    f"{V}/secrets/rt-x#frag",
])
def test_anything_else_is_invalid_input(url):
    with pytest.raises(InvalidInput) as err:
        parse_secret_id(url)
    assert set(err.value.errors) == {"url"}


@pytest.mark.parametrize(("name", "expected"), [
    ("rt-contoso", "contoso"), ("cs-contoso", None), ("rt-", None), ("other", None)])
def test_credential_id_from_secret_name(name, expected):
    assert credential_id_from_secret_name(name) == expected


@pytest.mark.parametrize(("host", "azure"), [
    ("contoso.vault.azure.net", True), ("contoso.vault.azure.cn", True),
    ("contoso.vault.usgovcloudapi.net", True), ("contoso.vault.microsoftazure.de", True),
    ("contoso.managedhsm.azure.net", True), ("CONTOSO.VAULT.AZURE.NET", True),
    ("localhost", False), ("contoso.vault.localhost", False), ("vault.azure.net", False),
    ("evil-vault.azure.net.example", False), (None, False),
])
def test_azure_vault_hosts(host, azure):
    assert is_azure_vault_host(host) is azure


class _Response:
    def __init__(self, status, body, headers=None):
        self.status_code, self._body, self.headers = status, body, headers or {}
        self.reason, self.request = "", None

    def text(self, encoding=None):
        return self._body

    def body(self):
        return self._body.encode()


def _http_error(cls, status, code="", message="m", inner=None, headers=None):
    import json
    error = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return cls(response=_Response(status, json.dumps({"error": error}), headers))


@pytest.mark.parametrize(("exc", "expected"), [
    (_http_error(az.ResourceNotFoundError, 404, "SecretNotFound"), CredentialNotFound),
    (_http_error(az.HttpResponseError, 429, "Throttled", headers={"Retry-After": "7"}),
     TransientFailure),
    (_http_error(az.HttpResponseError, 503, "ServiceUnavailable"), TransientFailure),
    (_http_error(az.HttpResponseError, 403, "Forbidden",
                 "Operation get is not allowed on a disabled secret.", "SecretDisabled"),
     NeedsConsent),
    (_http_error(az.HttpResponseError, 403, "Forbidden", "Caller is not authorized"),
     AccessDenied),
    (_http_error(az.HttpResponseError, 403, "Forbidden", "Caller is not authorized to perform "
                 "action on resource.", "ForbiddenByRbac"), AccessDenied),
    (_http_error(az.ResourceExistsError, 409, "Conflict", "deleted",
                 "ObjectIsDeletedButRecoverable"), InvalidInput),
    (_http_error(az.ResourceExistsError, 409, "Conflict", "exists"), Conflict),
    (_http_error(az.HttpResponseError, 400, "BadParameter"), InvalidInput),
    (_http_error(az.ClientAuthenticationError, 401, "Unauthorized"), AccessDenied),
    (az.ServiceRequestError("connection refused"), TransientFailure),
])
def test_sdk_errors_are_mapped_once(exc, expected):
    with pytest.raises(BrokerError) as err, vault_errors("contoso"):
        raise exc
    assert type(err.value) is expected
    assert err.value.hint
    if getattr(exc, "status_code", None) == 429:
        assert err.value.retry_after == 7.0
    if isinstance(err.value, CredentialNotFound):
        assert err.value.credential_id == "contoso"
    if isinstance(err.value, AccessDenied):  # the broker's own identity: it writes tokens
        assert err.value.role == "Key Vault Secrets Officer" and err.value.scope == "the vault"
        assert "'Key Vault Secrets Officer' on the vault" in err.value.hint


def test_a_consumer_denied_by_rbac_is_told_the_read_only_role():
    forbidden = _http_error(az.HttpResponseError, 403, "Forbidden", "Caller is not authorized",
                            "ForbiddenByRbac")
    with pytest.raises(AccessDenied) as err, vault_errors("contoso", target=KEY_VAULT_READER):
        raise forbidden
    assert err.value.role == "Key Vault Secrets User"


@pytest.mark.parametrize(("status", "expected"), [
    (400, BrokerError), (409, Conflict), (403, AccessDenied), (401, AccessDenied),
    (429, TransientFailure), (500, TransientFailure), (503, TransientFailure)])
def test_storage_failures_follow_the_same_rules(status, expected):
    """The lease blob once made even a 400 or a 409 transient (retried for nothing)."""
    error = _http_error(az.HttpResponseError, status, "SomeStorageCode")
    with pytest.raises(BrokerError) as err, azure_errors(LEASES, "take the lease"):
        raise error
    assert type(err.value) is expected
    assert "Azure Storage (leases)" in str(err.value)
    if expected is AccessDenied:
        assert err.value.role == "Storage Blob Data Contributor"


def test_an_unreachable_service_is_transient_and_an_interactive_hint_does_not_promise_a_retry():
    from broker.cli.commands import person_hint

    with pytest.raises(TransientFailure) as err, azure_errors(queue("rotations"), "send"):
        raise az.ServiceRequestError("connection refused")
    said = person_hint(err.value)
    assert "run the command again" in said
    assert not any(words in said for words in ("will be retried", "retry later", "retries"))


def test_broker_errors_pass_through_the_mapping():
    with pytest.raises(Conflict), vault_errors("contoso"):
        raise Conflict()


RBAC_MESSAGE = (
    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny "
    "assignments or role definitions were changed recently, please observe propagation time.\r\n"
    "Caller: appid=a;oid=o;iss=https://sts.windows.net/t/\r\n"
    "Action: '{action}'\r\n"
    "Resource: '/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"
    "/secrets/rt-contoso'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\n"
    "DecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: kv;location=westeurope\r\n")


@pytest.mark.parametrize(("action", "role"), [
    ("Microsoft.KeyVault/vaults/secrets/getSecret/action", "Key Vault Secrets User"),
    ("Microsoft.KeyVault/vaults/secrets/readMetadata/action", "Key Vault Secrets User"),
    ("Microsoft.KeyVault/vaults/secrets/setSecret/action", "Key Vault Secrets Officer"),
    ("Microsoft.KeyVault/vaults/secrets/delete", "Key Vault Secrets Officer"),
])
def test_an_rbac_refusal_names_the_refused_action_the_role_and_the_exact_scope(action, role):
    exc = _http_error(az.HttpResponseError, 403, "Forbidden", RBAC_MESSAGE.format(action=action),
                      "ForbiddenByRbac")
    with pytest.raises(AccessDenied) as err, vault_errors("contoso", target=KEY_VAULT_READER):
        raise exc
    assert (err.value.role, err.value.action) == (role, action)
    assert err.value.scope == ("/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault"
                               "/vaults/kv/secrets/rt-contoso")
    assert role in err.value.hint and err.value.scope in err.value.hint
    assert "contoso" in str(err.value)
    assert "appid" not in str(err.value)  # the caller's ids stay out of the message


def test_the_sdk_connection_pool_is_as_large_as_the_threads_using_it():
    from broker.vault import secret_client

    client = secret_client("https://example.vault.azure.net", object(), connections=28)
    transport = client._client._client._pipeline._transport
    assert transport.session.adapters["https://"]._pool_maxsize == 28
    # requests' default (10) would open and drop a connection per request past ten threads
    small = secret_client("https://example.vault.azure.net", object(), connections=4)
    assert small._client._client._pipeline._transport.session.adapters[
        "https://"]._pool_maxsize == 10
