from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import broker
import broker.errors as errors_module
from broker.errors import (
    CONSENT_FAILURE_REASONS,
    AccessDenied,
    BrokerError,
    ConsentFailed,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    SettingsError,
    TransientFailure,
)

ALL = [cls for _, cls in inspect.getmembers(errors_module, inspect.isclass)
       if issubclass(cls, BrokerError)]
TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\b")


def drawn_tree() -> dict[str, str | None]:
    """{class name: the name of its parent} as errors.py's docstring draws the hierarchy."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in errors_module.__doc__.splitlines():
        match = TREE_LINE.match(line.removeprefix("    "))
        if not line.startswith("    ") or not match:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
    return parents


def every_broker_error() -> set[type[BrokerError]]:
    """BrokerError and every subclass defined anywhere in the broker package."""
    for module in pkgutil.walk_packages(broker.__path__, "broker."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    found, todo = set(), [BrokerError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] == "broker":
            found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_the_drawn_tree_lists_every_broker_error_with_its_parent():
    drawn = drawn_tree()
    assert drawn["BrokerError"] is None and drawn["CredentialNotFound"] == "InvalidInput"
    actual = {cls.__name__: (None if cls is BrokerError else cls.__bases__[0].__name__)
              for cls in every_broker_error()}
    assert actual == drawn


def test_every_broker_error_is_defined_in_errors_py():
    assert {cls.__module__ for cls in every_broker_error()} == {"broker.errors"}


@pytest.mark.parametrize("cls", [c for c in ALL if c not in (CredentialNotFound, SettingsError,
                                                             ConsentFailed, AccessDenied)])
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


def test_access_denied_names_the_role_to_grant_and_where():
    exc = AccessDenied("Key Vault denied the operation (403).", role="Key Vault Secrets User",
                       scope="the secret")
    assert (exc.role, exc.scope) == ("Key Vault Secrets User", "the secret")
    assert "'Key Vault Secrets User' on the secret" in exc.hint


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
