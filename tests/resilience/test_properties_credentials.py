"""Credential fields as a form, a CSV row or JSON gives them: any mapping of strings is a valid,
normalised spec or InvalidInput naming the bad fields; a valid spec survives the vault."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.credentials import (
    ENVIRONMENTS,
    MESSAGES,
    SLUG,
    CredentialSpec,
    Status,
    is_guid,
)
from broker.errors import InvalidInput
from tests.support.broker import make_broker

FIELDS = ("id", "environment", "product", "marketplace", "tenant_id", "client_id",
          "client_secret", "secret_expires_on")
NOW = datetime(2031, 3, 14, 9, 26, tzinfo=UTC)
TODAY = datetime.now(UTC).date()

printable = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ")
text64 = st.text(printable, min_size=1, max_size=64).filter(lambda t: t.strip())
domain = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){0,2}\.(example|onmicrosoft\.com|com)",
                       fullmatch=True)
guid = st.uuids().map(str)
cased = st.sampled_from([str, str.upper, str.title, lambda s: f"  {s} "])


def future_dates(after: date) -> st.SearchStrategy[date]:
    return st.dates(min_value=after + timedelta(days=1), max_value=date(2200, 12, 31))


def cpv_fields() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({
        "id": st.from_regex(SLUG.strip("^$"), fullmatch=True),
        "environment": st.sampled_from(ENVIRONMENTS),
        "product": text64, "marketplace": text64,
        "tenant_id": st.one_of(guid, domain),
    }, optional={"client_id": st.just(""), "client_secret": st.just(""),
                 "secret_expires_on": st.just("")})


def own_app_fields(after: date) -> st.SearchStrategy[dict[str, str]]:
    return cpv_fields().flatmap(lambda base: st.fixed_dictionaries({
        "client_id": guid,
        "client_secret": st.text(printable, min_size=1, max_size=40).filter(lambda t: t.strip()),
        "secret_expires_on": future_dates(after).map(date.isoformat),
    }).map(lambda app: {**base, **app}))


def valid_fields(after: date) -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(cpv_fields(), own_app_fields(after))


def restyled(fields: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """The same values as an operator might type them: other case, stray spaces."""
    names = [n for n in ("id", "environment", "tenant_id", "client_id") if fields.get(n)]
    return st.fixed_dictionaries({n: cased for n in names}).map(
        lambda styles: {**fields, **{n: styles[n](fields[n]) for n in styles}})


# anything: valid fields, then some replaced by arbitrary text, plus unknown keys
mappings = valid_fields(NOW.date()).flatmap(restyled).flatmap(lambda fields: st.tuples(
    st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=70), max_size=3),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2),
).map(lambda extra: {**extra[1], **fields, **extra[0]}))


@settings(max_examples=200, deadline=None)
@given(mappings)
def test_any_mapping_of_strings_is_a_normalised_spec_or_invalid_input_naming_fields(data):
    try:
        spec = CredentialSpec.from_mapping(data).validated(now=NOW)
    except InvalidInput as exc:
        event("invalid: " + ", ".join(sorted(exc.errors)))
        assert exc.errors, "InvalidInput without a field"
        assert set(exc.errors) <= set(FIELDS), exc.errors
        assert set(exc.errors.values()) <= set(MESSAGES.values()), exc.errors
        return
    event("valid (CPV)" if spec.is_cpv else "valid (own app)")
    assert spec.id == data["id"].strip().lower()
    assert spec.environment in ENVIRONMENTS and spec.environment == data["environment"].strip(
        ).lower()
    assert spec.product == data["product"].strip() and spec.product.isprintable()
    assert spec.marketplace == data["marketplace"].strip()
    assert spec.tenant_id == data["tenant_id"].strip().lower()
    if spec.is_cpv:
        assert spec.client_id is None and spec.client_secret is None
        assert spec.secret_expires_on is None
    else:
        assert is_guid(spec.client_id) and spec.client_id == data["client_id"].strip().lower()
        assert spec.client_secret and spec.client_secret == data["client_secret"].strip()
        assert spec.secret_expires_on > NOW.date()
    assert spec.validated(now=NOW) == spec  # normalising twice changes nothing


APP_FIELDS = frozenset({"client_id", "client_secret", "secret_expires_on"})


@settings(max_examples=200, deadline=None)
@given(valid_fields(NOW.date()), st.sampled_from(FIELDS), st.text(max_size=70))
def test_one_bad_field_is_named_and_no_good_field_is_blamed(fields, name, value):
    data = {**fields, name: value}
    try:
        CredentialSpec.from_mapping(data).validated(now=NOW)
    except InvalidInput as exc:
        # the app's three fields depend on each other (CPV or own app); the rest stand alone
        blamable = APP_FIELDS if name in APP_FIELDS else {name}
        assert exc.errors and set(exc.errors) <= blamable, (name, exc.errors)
        if name not in APP_FIELDS:
            assert name in exc.errors
        return
    event(f"{name}: accepted")


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_fields(TODAY).flatmap(restyled))
def test_a_valid_spec_round_trips_through_the_vault_tags(broker, data):
    credential_id = f"prop-{uuid.uuid4().hex[:12]}"
    spec = dataclasses.replace(CredentialSpec.from_mapping(data), id=credential_id)
    expected = spec.validated(now=datetime.now(UTC))

    stored = broker.add_credential(spec)
    try:
        again = broker.get_credential(credential_id)
        for view in (stored, again):
            assert (view.id, view.environment, view.product, view.marketplace,
                    view.tenant_id, view.client_id) == (
                expected.id, expected.environment, expected.product, expected.marketplace,
                expected.tenant_id, expected.client_id)
            assert view.stored_status is Status.PENDING_CONSENT
            assert view.latest is not None and not view.latest.enabled
        if expected.client_id:
            assert broker.vault.read_client_secret(credential_id) == expected.client_secret
            assert again.secret_expires_on.date() == expected.secret_expires_on
        else:
            assert again.secret_expires_on is None
        # what the vault gives back is itself a valid spec, equal to what was stored
        back = CredentialSpec(
            id=again.id, environment=again.environment, product=again.product,
            marketplace=again.marketplace, tenant_id=again.tenant_id,
            client_id=again.client_id, client_secret=expected.client_secret,
            secret_expires_on=again.secret_expires_on.date() if again.secret_expires_on
            else None)
        assert back.validated(now=datetime.now(UTC)) == expected
    finally:
        broker.remove_credential(credential_id)


def test_a_credential_id_that_cannot_be_encoded_is_invalid_input_not_a_crash(broker):
    with pytest.raises(InvalidInput):  # CredentialNotFound is an InvalidInput
        broker.get_credential("ab\udcff")
