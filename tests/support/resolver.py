"""Helpers for the TokenResolver tests: credentials written straight to the vault, and a hook
that counts (and can slow or fail) the resolver's own vault requests.

    credential = register(vault)                   # a pending-consent placeholder
    store(vault, credential, "0.A...")             # a token version, as a consent writes it
    counter = Counter(); TokenResolver(raw_request_hook=counter)   # counter.gets: vault GETs
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from azure.core.exceptions import ServiceRequestError

from broker.credentials import Credential, CredentialSpec, Source
from broker.vault import Vault
from devstack import seed


def register(vault: Vault, client_id: str | None = None) -> Credential:
    now = datetime.now(UTC)
    spec = CredentialSpec(f"resolve-{uuid.uuid4().hex[:10]}", "test", "Billing", "US",
                          seed.PARTNER_TENANT_ID, client_id)
    vault.create_placeholder(spec, now=now)
    return vault.get_credential(spec.id)


def store(vault: Vault, credential: Credential, token: str) -> str:
    version = vault.write_token(credential, token, source=Source.CONSENT,
                                obtained_at=datetime.now(UTC), consented_by="test", mfa=True)
    return version.version


class Counter:
    """Counts the vault GETs a resolver makes (each attempt: the hook runs after the retry
    policy), optionally slowing or failing them."""

    def __init__(self) -> None:
        self.gets, self.delay, self.fail = 0, 0.0, False
        self.lock = threading.Lock()

    def __call__(self, request) -> None:
        if request.http_request.method == "GET":
            with self.lock:
                self.gets += 1
            time.sleep(self.delay)
            if self.fail:
                raise ServiceRequestError("simulated network failure")
