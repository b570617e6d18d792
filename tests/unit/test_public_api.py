from __future__ import annotations

import json
import subprocess
import sys

import broker

PUBLIC = [
    "AccessDenied", "AppMisconfigured", "Broker", "BrokerError", "Conflict", "ConsentFailed",
    "Credential", "CredentialNotFound", "CredentialSpec", "InvalidInput", "NeedsConsent",
    "Settings", "SettingsError", "Source", "Status", "TokenResolver", "TransientFailure",
    "load_settings",
]


def test_public_surface_is_exactly_this_and_sorted():
    assert broker.__all__ == PUBLIC
    assert broker.__all__ == sorted(broker.__all__)


def test_every_public_name_resolves_to_its_module():
    from broker.credentials import Credential
    from broker.errors import BrokerError
    from broker.resolver import TokenResolver
    from broker.service import Broker

    for name in PUBLIC:
        assert getattr(broker, name) is not None
    assert broker.Broker is Broker and broker.TokenResolver is TokenResolver
    assert broker.Credential is Credential and broker.BrokerError is BrokerError


def test_unknown_attribute_is_an_attribute_error():
    try:
        broker.Nope  # noqa: B018
    except AttributeError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("broker.Nope resolved")


def test_import_broker_loads_no_sdk():
    """Functions cold starts and consumers pay for what `import broker` pulls in."""
    code = ("import sys, json, broker; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('azure', 'msal', 'requests', 'flask', 'jwt', 'rich', "
            "'dotenv', 'cryptography', 'broker'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    assert loaded == ["broker", "broker.credentials", "broker.errors", "broker.logs",
                      "broker.reasons", "broker.resolver", "broker.settings"]


def test_python_dash_m_broker_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "broker", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "credentials" in result.stdout
