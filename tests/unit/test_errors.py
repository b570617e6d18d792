from __future__ import annotations

import inspect

import pytest

import broker.errors as errors_module
from broker.errors import (
    CONSENT_FAILURE_REASONS,
    AppMisconfigured,
    BrokerError,
    Conflict,
    ConsentFailed,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    SettingsError,
    TransientFailure,
)

ALL = [cls for _, cls in inspect.getmembers(errors_module, inspect.isclass)
       if issubclass(cls, BrokerError)]


def test_the_hierarchy_is_the_one_drawn_in_the_docstring():
    assert {cls.__name__ for cls in ALL} == {
        "BrokerError", "InvalidInput", "CredentialNotFound", "SettingsError", "NeedsConsent",
        "ConsentFailed", "AppMisconfigured", "TransientFailure", "Conflict"}
    for cls in ALL:
        assert cls.__name__ in errors_module.__doc__
    assert issubclass(CredentialNotFound, InvalidInput)
    for cls in (InvalidInput, SettingsError, NeedsConsent, ConsentFailed, AppMisconfigured,
                TransientFailure, Conflict):
        assert cls.__bases__ == (BrokerError,)


@pytest.mark.parametrize("cls", [c for c in ALL if c not in (CredentialNotFound, SettingsError,
                                                             ConsentFailed)])
def test_every_error_has_a_default_message_and_hint(cls):
    exc = cls()
    assert str(exc) and exc.hint and exc.message == str(exc)


def test_hints_differ_per_class_and_can_be_overridden():
    hints = {cls: cls.hint for cls in ALL if cls is not ConsentFailed}
    assert len(set(hints.values())) == len(hints)
    assert NeedsConsent(hint="do this").hint == "do this"
    assert NeedsConsent().hint == NeedsConsent.hint


def test_invalid_input_lists_field_messages():
    exc = InvalidInput(errors={"id": "bad id", "environment": "bad env"})
    assert exc.errors == {"id": "bad id", "environment": "bad env"}
    assert str(exc) == "id: bad id; environment: bad env"


def test_credential_not_found_names_the_id():
    exc = CredentialNotFound("contoso")
    assert exc.credential_id == "contoso" and "'contoso'" in str(exc)
    assert exc.errors == {"id": "No credential with this id."}
    assert "credentials list" in exc.hint


def test_settings_error_names_the_setting():
    exc = SettingsError("BROKER_VAULT_URL")
    assert exc.setting == "BROKER_VAULT_URL" and "BROKER_VAULT_URL" in str(exc)


@pytest.mark.parametrize("reason", CONSENT_FAILURE_REASONS)
def test_each_consent_failure_reason_has_its_own_hint(reason):
    exc = ConsentFailed(reason)
    assert exc.reason == reason and exc.hint and str(exc)


def test_unknown_consent_failure_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown consent failure reason"):
        ConsentFailed("because")


def test_transient_failure_carries_retry_after():
    assert TransientFailure(retry_after=2.5).retry_after == 2.5
    assert TransientFailure().retry_after is None
