"""Key Vault's expiry events (Event Grid), for every secret the broker depends on.

Key Vault raises `SecretNearExpiry` 30 days before the current version of a secret expires and
`SecretExpired` when it has. infra/ subscribes the function `secret_near_expiry` to both vaults,
unfiltered, and `handle` decides what each event means:

- `rt-<id>` (token vault): the refresh token stopped rotating; rotate it now, or tell a human
  (`jobs.near_expiry_event`);
- `cs-<id>` (token vault): a partner app's client secret runs out; the operator saves a new one;
- `cpv-client-secret`, `operator-client-secret`, `broker-secret-key` (config vault): the
  broker's own secrets. An expired CPV secret stops every credential of the CPV model at once,
  an expired operator secret locks the operators out: the notification says how to renew each.

Anything else (another secret, a key, a certificate) is logged and ignored. The event's data is
Key Vault's (`Id`, `VaultName`, `ObjectType`, `ObjectName`, `Version`, `NBF`, `EXP`); nothing in
it is secret, and nothing secret is read to act on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker import jobs
from broker.config_vault import CPV_CLIENT_SECRET, OPERATOR_CLIENT_SECRET, SIGNING_KEY
from broker.credentials import CS_PREFIX, RT_PREFIX
from broker.errors import InvalidInput
from broker.jobs import EXPIRED, EXPIRY_EVENTS, NEAR_EXPIRY
from broker.logs import bound, get_logger
from broker.notify import Event

if TYPE_CHECKING:
    from broker.service import Broker

log = get_logger(__name__)



def watched(name: object) -> bool:
    """Whether the broker acts on the expiry of a secret of this name (cheap: no service)."""
    return isinstance(name, str) and (
        name.startswith((RT_PREFIX, CS_PREFIX)) or name in _BROKER_SECRETS)


def handle(service: Broker, event_data: Mapping[str, Any], *, event_type: str = NEAR_EXPIRY):
    """Act on one expiry event; returns what was done: the RotationResult of a refresh token,
    the notification kind sent, or None when the event needs nothing."""
    if event_type not in EXPIRY_EVENTS or not isinstance(event_data, Mapping):
        return None
    name = event_data.get("ObjectName")
    if not isinstance(name, str) or event_data.get("ObjectType", "Secret") != "Secret":
        log.info("%s about %r is not about a secret; ignored", event_type, name)
        return None
    if name.startswith(RT_PREFIX):
        return jobs.near_expiry_event(service, event_data, event_type=event_type)
    if name.startswith(CS_PREFIX):
        return _partner_app_secret(service, name, event_data, event_type)
    if name in _BROKER_SECRETS:
        return _broker_secret(service, name, event_data, event_type)
    log.info("%s for %s: not a secret the broker uses; ignored", event_type, name)
    return None


def _partner_app_secret(service: Broker, name: str, data: Mapping[str, Any], event_type: str):
    credential_id = name[len(CS_PREFIX):]
    with bound(credential=credential_id):
        try:
            credential = service.get_credential(credential_id)
        except InvalidInput:  # CredentialNotFound, or a name that is no credential id
            log.info("%s for %s: no such credential; ignored", event_type, name)
            return None
        if not credential.client_id:
            log.info("%s for %s: the credential uses the CPV app now; ignored", event_type, name)
            return None
        _notify(service, "secret-expiring", credential_id,
                f"The client secret of the partner's app ({credential.client_id}) "
                f"{_when(event_type, data)}; without it this credential can neither rotate nor "
                "make access tokens (Key Vault: " + _event_name(event_type) + f" on {name}).",
                "ask the partner for a new client secret of their app and save it with its "
                f"expiry date: `broker credentials edit {credential_id}` (or the credential's "
                "Edit page on the consent site)")
        return "secret-expiring"


def _broker_secret(service: Broker, name: str, data: Mapping[str, Any], event_type: str):
    vault = str(data.get("VaultName") or "the config vault")
    settings = service.settings
    what, impact, action = _BROKER_SECRETS[name]
    app = {CPV_CLIENT_SECRET: settings.cpv_client_id,
           OPERATOR_CLIENT_SECRET: getattr(settings, "operator_client_id", None)}.get(name)
    _notify(service, "broker-secret-expiring", name,
            f"{what} ({name} in the vault {vault}) {_when(event_type, data)}. {impact}",
            action.format(app=app or "<application id>", vault=vault, name=name))
    log.warning("%s for the broker's own %s in %s: notified", event_type, name, vault)
    return "broker-secret-expiring"


# name -> (what it is, what stops when it expires, what to do)
_BROKER_SECRETS = {
    CPV_CLIENT_SECRET: (
        "The CPV app's client secret",
        "When it expires, every credential of the CPV model stops rotating and validating at "
        "once, and their refresh tokens start to age out.",
        "create a new client secret for the CPV app and store it as a new version with its "
        "expiry, then restart both apps: `az ad app credential reset --id {app} --append "
        "--end-date <YYYY-MM-DD> --query password -o tsv > secret.txt`, then `az keyvault "
        "secret set --vault-name {vault} --name {name} --file secret.txt --expires "
        "<YYYY-MM-DD>T00:00:00Z` and delete secret.txt (infra/README.md, one-time step 1)",
    ),
    OPERATOR_CLIENT_SECRET: (
        "The operator sign-in app's client secret",
        "When it expires, operators can no longer sign in to the consent site (partner admins "
        "can still consent).",
        "create a new client secret for the operator app and store it as a new version with its "
        "expiry, then restart the web app: `az ad app credential reset --id {app} --append "
        "--end-date <YYYY-MM-DD> --query password -o tsv > secret.txt`, then `az keyvault "
        "secret set --vault-name {vault} --name {name} --file secret.txt --expires "
        "<YYYY-MM-DD>T00:00:00Z` and delete secret.txt (infra/README.md, one-time step 3)",
    ),
    SIGNING_KEY: (
        "The key that signs operator sessions and invite links",
        "When it expires, Key Vault stops handing it out and both apps fail to start.",
        "store a new random key as a new version of {name} in {vault} (infra/README.md, "
        "one-time step 2) and restart both apps; open invite links and operator sessions end",
    ),
}


def _when(event_type: str, data: Mapping[str, Any]) -> str:
    expires = data.get("EXP")
    date = None
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        date = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if event_type == EXPIRED:
        return f"expired on {date}" if date else "has expired"
    return f"expires on {date}" if date else "expires within 30 days"


def _event_name(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


def _notify(service: Broker, kind: str, subject: str, message: str, action: str) -> None:
    service.notify(Event(kind=kind, credential_id=subject, message=message, action=action))
