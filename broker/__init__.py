"""Partner token broker: keeps Partner Center refresh tokens alive in Azure Key Vault.

`import broker` stays light (no Azure SDK, no MSAL): those load when first used, because the
Functions cold start and every consumer's start-up pay for what this imports. `Broker` (the
facade) is imported on first access for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.credentials import Credential, CredentialSpec, Source, Status
from broker.errors import (
    AccessDenied,
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
from broker.resolver import TokenResolver
from broker.settings import Settings, load_settings

if TYPE_CHECKING:
    from broker.service import Broker

__all__ = [
    "AccessDenied",
    "AppMisconfigured",
    "Broker",
    "BrokerError",
    "Conflict",
    "ConsentFailed",
    "Credential",
    "CredentialNotFound",
    "CredentialSpec",
    "InvalidInput",
    "NeedsConsent",
    "Settings",
    "SettingsError",
    "Source",
    "Status",
    "TokenResolver",
    "TransientFailure",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name == "Broker":
        from broker.service import Broker

        return Broker
    raise AttributeError(f"module 'broker' has no attribute {name!r}")
