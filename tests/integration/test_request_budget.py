"""What one rotation, one validation and one due-scan cost in requests, whatever a credential's
history, counted at the (devstack) servers."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from broker import jobs
from broker.credentials import Source
from broker.errors import TransientFailure
from broker.runtime.queues import MemoryQueue
from tests.support.broker import consented_credential, make_broker, private_devstack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with private_devstack(tmp_path_factory.mktemp("budget")) as running:
        yield running


@pytest.fixture
def broker(stack, tmp_path):
    return make_broker(stack, tmp_path)


def vault_requests(stack) -> int:
    """The vault's own count of the requests it served (its stats endpoint is not counted)."""
    return requests.get(stack.vault_url + "_devstack/stats", verify=stack.ca_bundle,
                        timeout=10).json()["requests"]


class Served:
    """Requests the devstack servers answered since the last `clear`, by service and kind (its
    admin `/stats`, counted per service, method and route template)."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.clear()

    def _now(self) -> Counter:
        counts: Counter = Counter()
        for row in self.stack.stats()["requests"]:
            counts[(row["service"], row["method"], row["route"])] += row["count"]
        return counts

    def clear(self) -> None:
        self.base = self._now()

    def by_kind(self) -> dict[tuple[str, str], int]:
        out: Counter = Counter()
        for (service, method, route), count in (self._now() - self.base).items():
            if service == "authority":
                kind = "token" if route.endswith("/token") else \
                    "discovery" if "well-known" in route or "discovery" in route else route
                out[("entra", kind)] += count
            elif service == "vault":
                out[("vault", method)] += count
        return dict(out)


@pytest.fixture
def served(stack):
    return Served(stack)


def with_versions(broker, count: int):
    """A consented credential with `count` token versions (imports of fresh tokens)."""
    credential = consented_credential(broker)
    token, _ = broker.vault.read_token(credential.id)
    for _ in range(count - 1):
        broker.vault.write_token(credential, token, source=Source.IMPORT,
                                 obtained_at=datetime.now(UTC),
                                 consented_by="admin@contoso.example", mfa=True)
    return credential


@pytest.mark.parametrize("versions", [2, 365])
def test_a_rotation_costs_four_requests_whatever_the_history(stack, broker, served, versions):
    credential = with_versions(broker, versions)
    broker.rotate(credential.id)  # the process's first rotation fetches discovery once
    served.clear()

    result = broker.rotate(credential.id)

    assert result.outcome == "rotated"
    # GET current, PUT, GET read-back at the vault; one token request at Entra, no discovery
    assert served.by_kind() == {("vault", "GET"): 2, ("vault", "PUT"): 1,
                                ("entra", "token"): 1}


def test_discovery_happens_once_per_authority_per_process(stack, tmp_path, served):
    broker = make_broker(stack, tmp_path)
    credentials = [consented_credential(broker) for _ in range(3)]
    fresh = make_broker(stack, tmp_path / "fresh")  # a new process's broker: nothing cached
    served.clear()
    for credential in credentials:
        assert fresh.rotate(credential.id).outcome == "rotated"
    counts = served.by_kind()
    assert counts[("entra", "token")] == 3
    assert counts[("entra", "discovery")] == 1


def test_a_validation_reads_one_version_and_writes_only_its_tags(stack, broker, served):
    credential = with_versions(broker, 30)
    versions_before = len(broker.versions(credential.id))
    broker.validate(credential.id)  # warm discovery
    served.clear()

    report = broker.validate(credential.id)

    assert report.ok
    # GET current, PATCH its tags; one token request; no PUT
    assert served.by_kind() == {("vault", "GET"): 1, ("vault", "PATCH"): 1,
                                ("entra", "token"): 1}
    assert len(broker.versions(credential.id)) == versions_before


def test_the_due_scan_costs_its_listing_pages_and_one_send_per_due_credential(stack, broker):
    credentials = [consented_credential(broker) for _ in range(3)]
    queue = MemoryQueue("rotations")
    listing_pages = -(-len(broker.list_credentials()) // 25)
    before = vault_requests(stack)

    sent = jobs.enqueue_due(broker, queue, now=datetime.now(UTC) + timedelta(days=65))

    assert vault_requests(stack) - before == listing_pages
    assert {c.id for c in credentials} <= {item.credential_id for item in sent}
    assert queue.count() == len(sent)


def test_a_throttled_create_goes_out_once_and_pauses_the_pacer(stack, broker):
    """azure-core would re-send a 429'd create after Retry-After without asking the pacer; the
    broker sends each create once and leaves the retry to its own loop, which takes a permit."""
    credential = consented_credential(broker)
    token, _ = broker.vault.read_token(credential.id)
    stack.faults("vault", 429, 1.0)
    try:
        before = vault_requests(stack)
        with pytest.raises(TransientFailure):
            broker.vault.write_token(credential, token, source=Source.IMPORT,
                                     obtained_at=datetime.now(UTC),
                                     consented_by="admin@contoso.example", mfa=True)
        sent = vault_requests(stack) - before
    finally:
        stack.faults("vault", 429, 0)
    assert sent == 1
    assert broker.vault.pacer.take() >= 0.5  # the vault's Retry-After (1 s) is waited out


def test_versions_are_paged_one_request_a_page(stack, broker):
    credential = with_versions(broker, 30)  # 30 token versions and the placeholder
    before = vault_requests(stack)
    first, token = broker.versions_page(credential.id, page_size=25)
    assert vault_requests(stack) - before == 1 and len(first) == 25 and token
    second, last = broker.versions_page(credential.id, page_size=25, continuation=token)
    assert last is None and len(first) + len(second) == 31
    assert {v.version for v in first}.isdisjoint(v.version for v in second)


@pytest.mark.parametrize("link", [
    "https://attacker.example/secrets/rt-x/versions?api-version=7.4",
    "http://localhost/secrets/rt-x/versions",
    "https://localhost:1/secrets/rt-other/versions?$skiptoken=e30",
    "not a link",
])
def test_a_continuation_that_is_not_this_credentials_listing_is_refused(broker, link):
    from broker.errors import InvalidInput

    credential = consented_credential(broker)
    with pytest.raises(InvalidInput):
        broker.versions_page(credential.id, continuation=link)


def test_an_entra_503_is_not_replayed_by_msal_to_the_next_try(stack, broker, served):
    """MSAL's throttle cache would answer a retry of the same token request from memory for
    the Retry-After; the broker's own backoff decides instead, and its next try goes out."""
    credential = consented_credential(broker)
    broker.rotate(credential.id)
    stack.faults("entra", 503, 1.0)
    try:
        assert broker.rotate(credential.id).outcome == "deferred"
    finally:
        stack.faults("entra", 503, 0)
    served.clear()
    assert broker.rotate(credential.id).outcome == "rotated"  # at once, not after a replay
    assert served.by_kind()[("entra", "token")] == 1


def test_threads_starting_together_fetch_discovery_once(stack, tmp_path, served):
    broker = make_broker(stack, tmp_path)
    credentials = [consented_credential(broker) for _ in range(6)]
    fresh = make_broker(stack, tmp_path / "fresh")
    served.clear()
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda c: fresh.rotate(c.id).outcome, credentials))
    assert outcomes == ["rotated"] * 6
    assert served.by_kind()[("entra", "discovery")] == 1
