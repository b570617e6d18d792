"""A real `Broker` against a running devstack, and the steps tests repeat: register, consent.

    broker = make_broker(devstack, tmp_path)                 # file leases, recording notifier
    credential = consented_credential(broker)                # add + sign-in + finish_consent
    broker.notifier.events                                   # what would have been sent

Everything is real (vault, Entra through MSAL, leases); only the notifier is a recorder, the
injected seam the broker tells humans through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

from broker.consent import ConsentResult
from broker.credentials import Credential, CredentialSpec
from broker.rotation import RetryPolicy
from broker.service import Broker
from broker.settings import Settings, load_settings
from devstack import seed
from tests.support.browserless import auth_response, complete_sign_in
from tests.support.devstack import RunningDevstack, environment, running_devstack

ADMIN = seed.PARTNER_ADMIN_UPN
SECRET_KEY = "tests-only-secret-key-for-signing-invites-0123456789"
PUBLIC_URL = "http://localhost:47400"
REDIRECT_URI = PUBLIC_URL + "/consent/callback"
# fast enough for tests, still the real backoff and Retry-After logic; a Retry-After longer
# than `max_wait` (Entra's 5 s) defers instead of waiting
FAST_RETRY = RetryPolicy(tries=3, base=0.05, cap=0.2, max_wait=2.0)


class RecordingNotifier:
    """Stands in for broker.notify.Notifier: keeps the events instead of sending them."""

    def __init__(self) -> None:
        self.events: list = []
        self._lock = threading.Lock()

    def notify(self, event) -> None:
        with self._lock:
            self.events.append(event)

    def for_credential(self, credential_id: str) -> list:
        with self._lock:
            return [e for e in self.events if e.credential_id == credential_id]

    def kinds(self, credential_id: str) -> list[str]:
        return [e.kind for e in self.for_credential(credential_id)]


def unique_id(prefix: str = "cred") -> str:
    """A credential id no other test (sharing the session devstack) will use."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def settings_for(stack: RunningDevstack | Mapping[str, str], tmp_path: Path,
                 **overrides) -> Settings:
    """Settings from a devstack's env file, with a private state dir and a fixed signing key."""
    env = dict(stack.env if isinstance(stack, RunningDevstack) else stack)
    env.update({
        "BROKER_STATE_DIR": str(tmp_path / "broker-state"),
        "BROKER_SECRET_KEY": SECRET_KEY,
        "BROKER_PUBLIC_URL": PUBLIC_URL,
    })
    env.pop("AzureWebJobsStorage", None)
    settings = load_settings(env, dotenv=False)
    return dataclasses.replace(settings, **overrides)


def make_broker(stack: RunningDevstack | Mapping[str, str], tmp_path: Path, *,
                notifier=None, retry: RetryPolicy | None = FAST_RETRY, **overrides) -> Broker:
    """A Broker on the devstack; `overrides` replace Settings fields (for example
    `storage=azurite` for blob leases, `lease_seconds=15`)."""
    settings = settings_for(stack, tmp_path, **overrides)
    return Broker(settings, notifier=notifier or RecordingNotifier(), retry=retry)


def spec(credential_id: str | None = None, *, tenant_id: str = seed.PARTNER_TENANT_ID,
         own_app: bool = False, client_secret: str = seed.PARTNER_APP_SECRET,
         environment_name: str = "test") -> CredentialSpec:
    """A CPV-model credential spec for contoso, or the partner's own app with `own_app`."""
    return CredentialSpec(
        id=credential_id or unique_id(),
        environment=environment_name,
        product="Billing",
        marketplace="US",
        tenant_id=tenant_id,
        client_id=seed.PARTNER_APP_ID if own_app else None,
        client_secret=client_secret if own_app else None,
        secret_expires_on=date(2099, 12, 31) if own_app else None,
    )


def sign_in_and_finish(broker: Broker, credential_id: str, user: str = ADMIN, *,
                       invite_token: str | None = None, prompt_consent: bool = False,
                       scopes=None) -> ConsentResult:
    """begin_consent, the emulator's pages without a browser, finish_consent."""
    start = broker.begin_consent(credential_id, REDIRECT_URI, invite_token=invite_token,
                                 prompt_consent=prompt_consent, scopes=scopes)
    redirect = complete_sign_in(start.auth_url, user)
    return broker.finish_consent(start.flow, auth_response(redirect))


def consented_credential(broker: Broker, user: str = ADMIN, *, credential_id: str | None = None,
                         own_app: bool = False, tenant_id: str = seed.PARTNER_TENANT_ID
                         ) -> Credential:
    """Register a credential and complete its consent; returns it as the vault now has it."""
    added = broker.add_credential(spec(credential_id, own_app=own_app, tenant_id=tenant_id))
    sign_in_and_finish(broker, added.id, user)
    return broker.get_credential(added.id)


@contextlib.contextmanager
def private_devstack(directory: Path, *args: str) -> Iterator[RunningDevstack]:
    """A devstack of one's own (to inject faults, move the clock, revoke), with its env loaded
    into this process for the SDKs and restored afterwards."""
    with running_devstack(directory, *args) as stack, environment(stack.env):
        yield stack
