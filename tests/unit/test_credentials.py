from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from broker.credentials import (
    MESSAGES,
    Credential,
    CredentialSpec,
    Source,
    Status,
    TokenVersion,
    format_instant,
)
from broker.errors import InvalidInput

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
APP = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
TENANT = "2a9c1e4b-7d3f-4b8a-9e6c-5f0d1c2b3a4e"


def cpv_spec(**changes) -> CredentialSpec:
    spec = CredentialSpec(id="contoso-test", environment="test", product="Billing",
                          marketplace="US", tenant_id=TENANT)
    return replace(spec, **changes)


def own_app_spec(**changes) -> CredentialSpec:
    fields = {"client_id": APP, "client_secret": "app-secret-value",
              "secret_expires_on": date(2027, 1, 1), **changes}
    return cpv_spec(**fields)


def errors_of(spec: CredentialSpec, existing: Credential | None = None) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        spec.validated(now=NOW, existing=existing)
    return err.value.errors


def test_valid_cpv_spec_is_normalised():
    spec = cpv_spec(id=" Contoso-Test ", environment="Production", tenant_id="Contoso.Example",
                    product=" Billing ").validated(now=NOW)
    assert (spec.id, spec.environment, spec.tenant_id, spec.product) == (
        "contoso-test", "production", "contoso.example", "Billing")
    assert spec.is_cpv and spec.client_id is None


def test_valid_own_app_spec_keeps_secret_out_of_repr():
    spec = own_app_spec(client_id=APP.upper()).validated(now=NOW)
    assert spec.client_id == APP and not spec.is_cpv
    assert "app-secret-value" not in repr(spec)


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"id": ""}, "id", MESSAGES["id"]),
    ({"id": "-contoso"}, "id", MESSAGES["id"]),
    ({"id": "contoso_test"}, "id", MESSAGES["id"]),
    ({"id": "a" * 64}, "id", MESSAGES["id"]),
    ({"id": "ümlaut"}, "id", MESSAGES["id"]),
    ({"environment": "staging"}, "environment", MESSAGES["environment"]),
    ({"environment": ""}, "environment", MESSAGES["environment"]),
    ({"product": ""}, "product", MESSAGES["product"]),
    ({"product": "x" * 65}, "product", MESSAGES["product"]),
    ({"product": "bad\x00byte"}, "product", MESSAGES["product"]),
    ({"marketplace": "   "}, "marketplace", MESSAGES["marketplace"]),
    ({"marketplace": "line\nbreak"}, "marketplace", MESSAGES["marketplace"]),
    ({"tenant_id": ""}, "tenant_id", MESSAGES["tenant_id"]),
    ({"tenant_id": "contoso"}, "tenant_id", MESSAGES["tenant_id"]),
    ({"tenant_id": "2a9c1e4b-7d3f-4b8a-9e6c"}, "tenant_id", MESSAGES["tenant_id"]),
    ({"tenant_id": "conto so.example"}, "tenant_id", MESSAGES["tenant_id"]),
    ({"client_secret": "orphan-secret"}, "client_secret", MESSAGES["client_secret_cpv"]),
    ({"secret_expires_on": date(2027, 1, 1)}, "secret_expires_on",
     MESSAGES["secret_expires_on_cpv"]),
])
def test_cpv_spec_field_messages(changes, field, message):
    assert errors_of(cpv_spec(**changes)) == {field: message}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"client_id": "not-a-guid"}, "client_id", MESSAGES["client_id"]),
    ({"client_secret": None}, "client_secret", MESSAGES["client_secret"]),
    ({"client_secret": "   "}, "client_secret", MESSAGES["client_secret"]),
    ({"secret_expires_on": None}, "secret_expires_on", MESSAGES["secret_expires_on"]),
    ({"secret_expires_on": date(2026, 3, 1)}, "secret_expires_on",
     MESSAGES["secret_expires_on_past"]),
    ({"secret_expires_on": date(2020, 1, 1)}, "secret_expires_on",
     MESSAGES["secret_expires_on_past"]),
])
def test_own_app_spec_field_messages(changes, field, message):
    spec = replace(own_app_spec(), **changes)
    assert errors_of(spec) == {field: message}


def test_every_bad_field_is_reported_at_once_without_the_secret():
    spec = CredentialSpec(id="Bad Id", environment="x", product="", marketplace="",
                          tenant_id="?", client_id="nope", client_secret="hunter2-secret")
    with pytest.raises(InvalidInput) as err:
        spec.validated(now=NOW)
    assert set(err.value.errors) == {"id", "environment", "product", "marketplace",
                                     "tenant_id", "client_id", "secret_expires_on"}
    assert "hunter2-secret" not in str(err.value)


def stored(client_id: str | None = APP) -> Credential:
    latest = version(tags={"client_id": client_id or "cpv", "status": "active"})
    return Credential.from_latest("contoso-test", latest, "https://v/secrets/rt-contoso-test")


def test_edit_with_blank_secret_keeps_the_stored_one():
    spec = own_app_spec(client_secret=None, secret_expires_on=None)
    edited = spec.validated(now=NOW, existing=stored())
    assert edited.client_secret is None and edited.secret_expires_on is None


def test_edit_keeps_the_id_of_the_existing_credential():
    edited = cpv_spec(id="renamed").validated(now=NOW, existing=stored(None))
    assert edited.id == "contoso-test"


@pytest.mark.parametrize("existing_app", [None, "11111111-2222-4333-8444-555555555555"])
def test_edit_to_a_different_app_needs_its_secret(existing_app):
    spec = own_app_spec(client_secret=None, secret_expires_on=None)
    assert errors_of(spec, stored(existing_app)) == {
        "client_secret": MESSAGES["client_secret"],
        "secret_expires_on": MESSAGES["secret_expires_on"],
    }


def test_edit_with_new_secret_needs_its_expiry():
    spec = own_app_spec(secret_expires_on=None)
    assert errors_of(spec, stored()) == {"secret_expires_on": MESSAGES["secret_expires_on"]}


def test_from_mapping_reads_forms_csv_rows_and_json():
    spec = CredentialSpec.from_mapping({
        "id": " contoso ", "environment": "test", "product": "P", "marketplace": "US",
        "tenant_id": TENANT, "client_id": "", "client_secret": "", "secret_expires_on": "",
        "refresh_token": "ignored",
    })
    assert spec == CredentialSpec("contoso", "test", "P", "US", TENANT)
    dated = CredentialSpec.from_mapping({"id": "x", "secret_expires_on": "2027-01-31T00:00:00Z",
                                         "client_id": APP, "client_secret": "s"})
    assert dated.secret_expires_on == date(2027, 1, 31)
    assert CredentialSpec.from_mapping({"secret_expires_on": date(2027, 2, 1)}) \
        .secret_expires_on == date(2027, 2, 1)


def test_from_mapping_rejects_a_date_that_is_not_one():
    with pytest.raises(InvalidInput) as err:
        CredentialSpec.from_mapping({"id": "x", "secret_expires_on": "31/01/2027"})
    assert err.value.errors == {"secret_expires_on": MESSAGES["secret_expires_on_format"]}


def version(*, tags: dict[str, str], expires_on: datetime | None = None, enabled=True,
            version_id: str | None = "a" * 32, created_on: datetime = NOW) -> TokenVersion:
    props = SimpleNamespace(
        version=version_id, id=f"https://v/secrets/rt-contoso-test/{version_id}",
        created_on=created_on, not_before=created_on, expires_on=expires_on, enabled=enabled,
        tags=tags, content_type="application/vnd.partner-refresh-token",
    )
    return TokenVersion.from_properties(props)


def test_token_version_reads_its_tags():
    v = version(tags={"source": "rotation", "status": "needs-consent", "mfa": "true",
                      "consented_by": "admin@contoso.example", "roles": "Admin Agent,Global",
                      "obtained_at": "2026-02-28T10:00:00.123456+00:00"})
    assert v.source is Source.ROTATION and v.status is Status.NEEDS_CONSENT
    assert v.mfa and v.consented_by == "admin@contoso.example"
    assert v.roles == ("Admin Agent", "Global")
    assert v.obtained_at == datetime(2026, 2, 28, 10, 0, 0, 123456, tzinfo=UTC)
    assert not v.is_placeholder


def test_token_version_without_our_tags_falls_back_safely():
    v = version(tags={"status": "weird", "obtained_at": "garbage"})
    assert v.status is Status.ERROR and v.source is None
    assert v.obtained_at == NOW and v.roles == () and not v.mfa


def test_format_instant_keeps_microseconds_in_utc():
    assert format_instant(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == \
        "2026-01-02T03:04:05.000006+00:00"


def credential(*, status="active", token_days: float | None = 60, secret_days=None):
    expires = None if token_days is None else NOW + timedelta(days=token_days)
    latest = version(tags={"status": status, "client_id": APP, "tenant_id": TENANT,
                           "environment": "test", "product": "P", "marketplace": "US",
                           "validated_at": "2026-02-01T00:00:00+00:00", "validation": "ok"},
                     expires_on=expires)
    secret = None if secret_days is None else NOW + timedelta(days=secret_days)
    return Credential.from_latest("contoso-test", latest, "https://v/secrets/rt-contoso-test",
                                  secret)


def test_credential_from_latest_version():
    c = credential()
    assert (c.id, c.client_id, c.tenant_id, c.environment) == ("contoso-test", APP, TENANT,
                                                               "test")
    assert c.stored_status is Status.ACTIVE and not c.is_cpv
    assert c.last_validation == "ok"
    assert c.last_validated_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert c.days_until_token_expiry(NOW) == 60


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, Status.ACTIVE),
    ({"token_days": 31}, Status.ACTIVE),
    ({"token_days": 30}, Status.EXPIRING),
    ({"token_days": 2}, Status.EXPIRING),
    ({"token_days": -1}, Status.NEEDS_CONSENT),
    ({"secret_days": 10}, Status.EXPIRING),
    ({"secret_days": 200}, Status.ACTIVE),
    ({"secret_days": -3}, Status.ERROR),
    ({"status": "expiring"}, Status.ACTIVE),
    ({"status": "needs-consent", "token_days": 2}, Status.NEEDS_CONSENT),
    ({"status": "pending-consent", "token_days": None}, Status.PENDING_CONSENT),
    ({"status": "error"}, Status.ERROR),
])
def test_status_refines_the_stored_one_by_dates(kwargs, expected):
    assert credential(**kwargs).status(NOW, warn_days=30) is expected


def test_days_until_expiry_is_none_without_dates():
    c = credential(status="pending-consent", token_days=None)
    assert c.days_until_token_expiry(NOW) is None and c.days_until_secret_expiry(NOW) is None
