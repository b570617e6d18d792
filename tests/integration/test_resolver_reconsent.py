"""A consumer sees a re-consent within seconds, and a dead grant does not hammer Entra or Key Vault.

When Entra refuses the cached refresh token, the resolver reads the vault once more (bypassing
its cache) before raising: if an admin consented again meanwhile, the new token is there. A
refusal is remembered for a few seconds, so a consumer calling in a loop costs Entra and the
vault one attempt per few seconds, not one per call.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from broker import NeedsConsent, TokenResolver
from broker.resolver import FAILURE_TTL
from devstack import seed
from tests.support.broker import make_broker, sign_in_and_finish, spec
from tests.support.resolver import Counter, store

PC_SCOPE = seed.PARTNER_CENTER_DEFAULT_SCOPE


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def entra_redemptions(devstack) -> int:
    """Token requests Entra ID answered, counted at the server (devstack's GET /stats)."""
    return sum(row["count"] for row in devstack.stats()["requests"]
               if row["service"] == "authority" and row["route"].endswith("/token"))


def dead_credential(broker):
    """A credential whose current token Entra refuses (invalid_grant), as after a revocation."""
    credential = broker.add_credential(spec())
    store(broker.vault, broker.get_credential(credential.id), f"0.Adead-{uuid.uuid4().hex}")
    return broker.get_credential(credential.id)


def test_a_reconsent_reaches_a_resolver_that_keeps_calling_within_seconds(broker, devstack):
    credential = dead_credential(broker)
    redemptions = entra_redemptions(devstack)
    counter = Counter()
    resolver = TokenResolver(settings=broker.settings, raw_request_hook=counter)
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def consumer() -> None:
        while not stop.is_set():
            try:
                resolver.access_token(credential.secret_id, PC_SCOPE)
            except NeedsConsent:
                outcomes.append((time.monotonic(), "needs-consent"))
                time.sleep(0.02)
            else:
                outcomes.append((time.monotonic(), "ok"))
                return

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(outcomes) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcomes and {o for _, o in outcomes} == {"needs-consent"}
        dead_calls, dead_reads = len(outcomes), counter.gets
        dead_redemptions = entra_redemptions(devstack) - redemptions
        reads_before = counter.gets
        sign_in_and_finish(broker, credential.id)  # the admin consents again: "Consent granted"
        consented_at = time.monotonic()
        thread.join(15)
    finally:
        stop.set()
    successes = [t for t, outcome in outcomes if outcome == "ok"]
    assert successes, "the resolver never saw the new consent"
    assert successes[0] - consented_at < 5.0
    # while the grant was dead: one Entra attempt and one vault re-read per refusal window, not
    # one per call (the loop made dozens of calls); after the consent, a handful of reads
    assert dead_calls >= 20 and dead_redemptions <= 6 and dead_reads <= 6
    assert counter.gets - reads_before <= 5


def test_a_refusal_is_remembered_briefly_and_then_tried_again(broker):
    credential = dead_credential(broker)
    counter = Counter()
    resolver = TokenResolver(settings=broker.settings, raw_request_hook=counter)
    with pytest.raises(NeedsConsent) as first:
        resolver.access_token(credential.secret_id, PC_SCOPE)
    reads = counter.gets  # the token, then one re-read after Entra's refusal
    for _ in range(50):
        with pytest.raises(NeedsConsent) as again:
            resolver.access_token(credential.secret_id, PC_SCOPE)
    assert counter.gets == reads  # answered from memory: no vault read, no Entra call
    assert str(again.value) == str(first.value)
    time.sleep(FAILURE_TTL + 0.1)
    with pytest.raises(NeedsConsent):
        resolver.access_token(credential.secret_id, PC_SCOPE)
    assert counter.gets == reads + 1  # tried again: Entra refused, the vault was re-read once


def test_a_refusal_names_the_url_and_what_to_do(broker):
    credential = dead_credential(broker)
    with pytest.raises(NeedsConsent) as err:
        TokenResolver(settings=broker.settings).access_token(credential.secret_id, PC_SCOPE)
    assert credential.secret_id in str(err.value)
    assert "consent" in err.value.hint
