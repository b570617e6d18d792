"""The registered functions, invoked as the Functions host invokes them, against devstack and
Azurite: the timer fans due credentials out to `rotations`, queue triggers rotate them once
each, failures go to `rotations-poison` after `maxDequeueCount` tries and raise the alarm.

The host is not available here, so `Host` below plays its part. For a queue trigger it does
what the Storage Queues extension does (QueueListener / QueueProcessor in Azure/azure-sdk-for-net,
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/): receive from
Azurite, hand the function a `func.QueueMessage` carrying Azurite's own dequeue count, delete on
success, release on failure until `DequeueCount >= maxDequeueCount`, then copy the body to
`<queue>-poison` and delete it (broker.runtime.queues.QueueProcessor; the 30 s between tries that
host.json asks for is 0 here). A private devstack keeps these credentials (200 of them in one
test) and the injected faults out of everyone else's vault.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter

import function_app
from broker.credentials import CredentialSpec, Source, Status
from broker.logs import redact
from broker.queue import MAX_DEQUEUE_COUNT, Queues, Received, RotationMessage
from broker.rotation import RetryPolicy
from broker.runtime.queues import QueueProcessor, poison_queues
from broker.service import Broker
from broker.settings import Settings, load_settings
from devstack import seed
from tests.support.browserless import consent_with_msal
from tests.support.devstack import environment, running_devstack
from tests.support.notify import Webhook, running_webhook

ADMIN = seed.PARTNER_ADMIN_UPN
ROLES = ("Global Administrator", "Admin Agent")
DUE_AGE_DAYS = 65  # 25 days left of 90: inside warn_days, so always due ("expiry")
FRESH_AGE_DAYS = 1


# -- the stack --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_devstack(tmp_path_factory.mktemp("functions-devstack")) as running, \
            environment(running.env):
        yield running


@pytest.fixture(scope="module")
def consented(stack) -> str:
    """One admin consent through the emulator's pages; every credential redeems from it."""
    return consent_with_msal(stack.authority, seed.CPV_APP_ID,
                             stack.env["BROKER_CPV_CLIENT_SECRET"], ADMIN)["refresh_token"]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    with running_webhook() as hook:
        yield hook


@pytest.fixture
def env(stack, azurite, webhook, tmp_path, monkeypatch) -> Settings:
    """The app settings of the function app, in the environment as the host provides them."""
    values = {**stack.env, "AzureWebJobsStorage": azurite, "BROKER_STATE_DIR": str(tmp_path),
              "BROKER_ROTATE_WINDOW_HOURS": "0", "BROKER_NOTIFY_WEBHOOK_URL": webhook.url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return load_settings(dotenv=False)


# -- the host's part --------------------------------------------------------------------------


def timer_request(past_due: bool = False) -> func.TimerRequest:
    """The timer payload the host sends the Python worker, decoded by the SDK's converter."""
    now = datetime.now(UTC)
    payload = {"Schedule": {"AdjustForDST": True}, "IsPastDue": past_due,
               "ScheduleStatus": {"Last": (now - timedelta(days=1)).isoformat(),
                                  "Next": now.isoformat(), "LastUpdated": now.isoformat()}}
    return TimerRequestConverter.decode(meta.Datum(json.dumps(payload), "json"),
                                        trigger_metadata={})


def queue_message(received: Received) -> func.QueueMessage:
    """What the worker builds from the host's invocation: body plus trigger metadata."""
    def text(value) -> meta.Datum:
        return meta.Datum(value.isoformat() if isinstance(value, datetime) else str(value),
                          "string")

    metadata = {"Id": text(received.id), "PopReceipt": text(received.pop_receipt),
                "DequeueCount": meta.Datum(str(received.dequeue_count), "json")}
    for key, value in (("InsertionTime", received.inserted_on),
                       ("ExpirationTime", received.expires_on),
                       ("NextVisibleTime", received.next_visible_on)):
        if value is not None:
            metadata[key] = text(value)
    return QueueMessageInConverter.decode(meta.Datum(received.body, "string"),
                                          trigger_metadata=metadata)


def grid_event(event_type: str, name: str, version: str | None) -> func.EventGridEvent:
    body = {"id": uuid.uuid4().hex, "subject": name, "eventType": event_type,
            "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            "eventTime": datetime.now(UTC).isoformat(), "dataVersion": "1", "metadataVersion": "1",
            "data": {"Id": f"https://kv.vault.azure.net/secrets/{name}/{version}",
                     "VaultName": "kv", "ObjectType": "Secret", "ObjectName": name,
                     "Version": version, "NBF": None, "EXP": None}}
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(body), "json"),
                                            trigger_metadata={})


class Host:
    def __init__(self, functions: dict) -> None:
        self.functions = functions
        self.queues: Queues = function_app._get_queues()
        self.deliveries: list[tuple[str, int, str]] = []  # (credential id, try, disposition)
        self._lock = threading.Lock()

    def run(self, name: str, *args):
        return self.functions[name].get_user_function()(*args)

    def timer(self, name: str, past_due: bool = False) -> None:
        self.run(name, timer_request(past_due))

    def drain(self, *, threads: int = 1, poison: bool = False, deadline_s: float = 60) -> None:
        """Run the queue trigger until its queue is empty, `threads` invocations at a time."""
        if poison:  # a trigger queue of its own, with its own "-poison"
            queues = poison_queues(function_app._get_broker().settings, self.queues.poison)
            name = "rotations_poison"
        else:
            queues, name = self.queues, "rotate_one"
        processor = QueueProcessor(queues, visibility_timeout_s=0)
        deadline = time.monotonic() + deadline_s

        def handle(received: Received) -> None:
            self.run(name, queue_message(received))

        def listen() -> None:
            while time.monotonic() < deadline:
                batch = queues.rotations.receive(1)
                if not batch:
                    if queues.rotations.count() == 0:
                        return
                    time.sleep(0.05)  # another invocation holds the last ones
                    continue
                outcome = processor.process(batch[0], handle)
                credential = RotationMessage.loads(batch[0].body).credential_id
                with self._lock:
                    self.deliveries.append((credential, batch[0].dequeue_count, outcome))

        workers = [threading.Thread(target=listen) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert queues.rotations.count() == 0, "the queue did not drain in time"

    def enqueued(self) -> list[RotationMessage]:
        """Every message now on `rotations` (taken off and put back untouched)."""
        held, out = [], []
        while batch := self.queues.rotations.receive(32, visibility_s=30):
            held += batch
            out += [RotationMessage.loads(m.body) for m in batch]
        for message in held:
            self.queues.rotations.release(message, delay_s=0)
        return out


@pytest.fixture(scope="module")
def functions() -> dict:
    import importlib

    module = importlib.reload(function_app)  # one indexing per app, as in the worker
    return {f.get_function_name(): f for f in module.app.get_functions()}


@pytest.fixture
def host(env, functions, monkeypatch) -> Host:
    """A fresh worker process's view: the app builds its Broker from the environment."""
    monkeypatch.setattr(function_app, "_broker", None)
    monkeypatch.setattr(function_app, "_queues", None)
    running = Host(functions)
    running.queues.rotations.clear()
    running.queues.poison.clear()
    return running


@pytest.fixture
def broker(host) -> Broker:
    return function_app._get_broker()


# -- credentials ------------------------------------------------------------------------------


def new_id(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def add_consented(broker: Broker, consented: str, age_days: float,
                  credential_id: str | None = None) -> str:
    """A credential whose token was obtained `age_days` ago: registered (its placeholder dated
    just before), then a fresh token of its own written with that obtained_at (not_before and
    expires_on follow it), as if consent had happened then."""
    credential_id = credential_id or new_id()
    obtained = datetime.now(UTC) - timedelta(days=age_days)
    spec = CredentialSpec(id=credential_id, environment="test", product="csp", marketplace="US",
                          tenant_id=seed.PARTNER_TENANT_ID).validated(now=datetime.now(UTC))
    broker.vault.create_placeholder(spec, now=obtained - timedelta(minutes=1))
    credential = broker.get_credential(credential_id)
    token = broker.identity.redeem(credential, consented).refresh_token
    broker.vault.write_token(credential, token, source=Source.CONSENT, obtained_at=obtained,
                             consented_by=ADMIN, mfa=True, roles=ROLES)
    return credential_id


def add_many(broker: Broker, consented: str, ages: list[float], prefix: str) -> list[str]:
    ids = [f"{prefix}-{i:03d}" for i in range(len(ages))]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: add_consented(broker, consented, pair[1], pair[0]),
                      zip(ids, ages, strict=True)))
    return ids


def version_count(broker: Broker, credential_id: str) -> int:
    return len(broker.versions(credential_id))


# -- the tests --------------------------------------------------------------------------------


def test_rotate_due_enqueues_exactly_the_due_credentials_with_ids_and_versions_only(
        host, broker, consented):
    due = {add_consented(broker, consented, DUE_AGE_DAYS) for _ in range(3)}
    fresh = {add_consented(broker, consented, FRESH_AGE_DAYS) for _ in range(2)}
    pending = new_id()
    broker.add_credential(CredentialSpec(id=pending, environment="test", product="csp",
                                         marketplace="US", tenant_id=seed.PARTNER_TENANT_ID))
    host.timer("rotate_due")
    messages = host.enqueued()
    assert {m.credential_id for m in messages} == due
    assert not {m.credential_id for m in messages} & (fresh | {pending})
    for message in messages:  # no request per credential: "the version obtained before this"
        assert message.version is None
        latest = broker.get_credential(message.credential_id).latest
        assert latest.obtained_at < message.enqueued_at
    raw = [json.loads(m.dumps()) for m in messages]
    assert all(set(r) == {"credential_id", "version", "enqueued_at"} for r in raw)
    for secret in redact.registered():  # no token went onto the queue
        assert all(secret not in m.dumps() for m in messages)


def test_a_past_due_timer_still_runs_the_due_scan(host, broker, consented, caplog):
    due = add_consented(broker, consented, DUE_AGE_DAYS)
    with caplog.at_level("WARNING", logger="function_app"):
        host.timer("rotate_due", past_due=True)
    assert "past due" in caplog.text
    assert due in {m.credential_id for m in host.enqueued()}


def test_rotations_are_spread_over_the_window_as_the_broker_planned(
        host, broker, consented, monkeypatch):
    due = add_consented(broker, consented, DUE_AGE_DAYS)
    monkeypatch.setenv("BROKER_ROTATE_WINDOW_HOURS", "2")
    monkeypatch.setattr(function_app, "_broker", None)  # a new process reads the new setting
    host.timer("rotate_due")
    planned = {i.credential_id: i.delay_s for i in function_app._get_broker().due()}
    assert planned[due] > 0
    assert host.queues.rotations.receive(32) == []  # nothing visible before its time
    assert host.queues.rotations.count() == len(planned)


def test_workers_drain_the_queue_and_rotate_each_credential_once(host, broker, consented):
    due = [add_consented(broker, consented, DUE_AGE_DAYS) for _ in range(4)]
    before = {c: broker.get_credential(c).latest.version for c in due}
    host.timer("rotate_due")
    host.drain(threads=4)
    for credential_id in due:
        latest = broker.get_credential(credential_id).latest
        assert latest.version != before[credential_id]
        assert latest.source is Source.ROTATION and latest.status is Status.ACTIVE
        assert version_count(broker, credential_id) == 3  # placeholder, consent, rotation
    assert not {i.credential_id for i in broker.due()} & set(due)
    assert host.queues.poison.count() == 0


def test_a_message_processed_twice_rotates_once(host, broker, consented):
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    host.timer("rotate_due")
    (message,) = [m for m in host.enqueued() if m.credential_id == credential_id]
    host.queues.rotations.send(message.dumps())  # the same message again
    host.drain()
    assert version_count(broker, credential_id) == 3
    mine = [d for d in host.deliveries if d[0] == credential_id]
    assert [d[2] for d in mine] == ["completed", "completed"]


def test_a_stale_message_is_a_no_op(host, broker, consented):
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    old = broker.get_credential(credential_id).latest.version
    broker.rotate(credential_id)  # a newer version appears (a consent, a manual rotation)
    host.queues.rotations.send(RotationMessage(credential_id, old, datetime.now(UTC)).dumps())
    host.drain()
    assert version_count(broker, credential_id) == 3


def test_two_workers_on_one_credential_never_both_write(host, broker, consented):
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    host.timer("rotate_due")
    (message,) = [m for m in host.enqueued() if m.credential_id == credential_id]
    host.queues.rotations.send(message.dumps())  # a duplicate, taken by a second invocation
    calls: list[tuple[float, float, str]] = []
    original = broker.rotate

    def timed(cid, **kwargs):
        started = time.monotonic()
        result = original(cid, **kwargs)
        calls.append((started, time.monotonic(), result.outcome))
        return result

    broker.rotate = timed
    broker.rotator.after_redeem = lambda cid: time.sleep(1.0)  # the first writer is slow
    try:
        host.drain(threads=2)
    finally:
        del broker.rotate
        broker.rotator.after_redeem = None
    (first, second) = sorted(calls)
    assert second[0] < first[1]  # the two invocations really overlapped
    assert sorted(c[2] for c in calls) == ["rotated", "skipped"]
    assert version_count(broker, credential_id) == 3


def test_a_failing_credential_reaches_the_poison_queue_and_is_marked_error(
        host, env, consented, webhook, stack, monkeypatch):
    # one try per step inside the broker: the queue does the retrying here
    broker = Broker(env, retry=RetryPolicy(tries=1))
    monkeypatch.setattr(function_app, "_broker", broker)
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    before = broker.get_credential(credential_id).latest.version
    host.queues.rotations.send(
        RotationMessage(credential_id, before, datetime.now(UTC)).dumps())
    stack.faults("entra", 503, 1.0)
    try:
        host.drain()
    finally:
        stack.faults("entra", 503, 0.0)
    mine = [(n, d) for c, n, d in host.deliveries if c == credential_id]
    assert mine == [(n, "released") for n in range(1, MAX_DEQUEUE_COUNT)] + [
        (MAX_DEQUEUE_COUNT, "poisoned")]
    assert host.queues.poison.count() == 1
    host.drain(poison=True)
    latest = broker.get_credential(credential_id).latest
    assert latest.version == before and latest.status is Status.ERROR  # token kept
    (alert,) = webhook.of("error", credential_id)
    assert "rotations-poison" in alert["message"]
    for secret in redact.registered():
        assert secret not in json.dumps(webhook.events)


def test_a_poison_message_about_a_replaced_version_flags_nothing(host, broker, consented):
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    old = broker.get_credential(credential_id).latest.version
    broker.rotate(credential_id)
    host.queues.poison.send(RotationMessage(credential_id, old, datetime.now(UTC)).dumps())
    host.drain(poison=True)
    assert broker.get_credential(credential_id).latest.status is Status.ACTIVE


def test_near_expiry_event_for_the_latest_version_rotates_now(host, broker, consented, webhook):
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    latest = broker.get_credential(credential_id).latest.version
    host.run("secret_near_expiry", grid_event("Microsoft.KeyVault.SecretNearExpiry",
                                              f"rt-{credential_id}", latest))
    now = broker.get_credential(credential_id).latest
    assert now.version != latest and now.source is Source.ROTATION
    # the old version expiring later is expected and ignored
    host.run("secret_near_expiry", grid_event("Microsoft.KeyVault.SecretExpired",
                                              f"rt-{credential_id}", latest))
    assert version_count(broker, credential_id) == 3
    assert not webhook.of("token-expiring", credential_id)


def test_near_expiry_event_that_cannot_rotate_tells_a_human(
        host, env, consented, webhook, stack, monkeypatch):
    broker = Broker(env, retry=RetryPolicy(tries=1))
    monkeypatch.setattr(function_app, "_broker", broker)
    credential_id = add_consented(broker, consented, DUE_AGE_DAYS)
    latest = broker.get_credential(credential_id).latest.version
    stack.faults("entra", 503, 1.0)
    try:
        host.run("secret_near_expiry", grid_event("Microsoft.KeyVault.SecretNearExpiry",
                                                  f"rt-{credential_id}", latest))
    finally:
        stack.faults("entra", 503, 0.0)
    assert broker.get_credential(credential_id).latest.version == latest
    assert webhook.of("token-expiring", credential_id)


def test_validate_all_fans_out_and_validates_every_active_credential(host, broker, consented):
    active = [add_consented(broker, consented, FRESH_AGE_DAYS) for _ in range(2)]
    pending = new_id()
    broker.add_credential(CredentialSpec(id=pending, environment="test", product="csp",
                                         marketplace="US", tenant_id=seed.PARTNER_TENANT_ID))
    versions = {cid: broker.get_credential(cid).latest.version for cid in active}
    host.timer("validate_all")
    messages = host.enqueued()  # the timer only enqueues: one message per active credential
    assert {m.credential_id for m in messages if m.job == "validate"} >= set(active)
    assert pending not in {m.credential_id for m in messages}
    host.drain(threads=2)
    for credential_id in active:
        # validated on the version it had: validation writes no version
        assert broker.get_credential(credential_id).latest.version == versions[credential_id]
        credential = broker.get_credential(credential_id)
        assert credential.last_validation == "ok" and credential.last_validated_at is not None
    assert broker.get_credential(pending).last_validated_at is None


def test_health_counts_credentials_by_status_and_shows_no_token(host, broker, consented):
    add_consented(broker, consented, FRESH_AGE_DAYS)
    request = func.HttpRequest("GET", "http://localhost/api/health", body=b"",
                               headers={"x-functions-key": "k"})
    response = host.run("health", request)
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["status"] == "ok" and body["credentials"]["active"] >= 1
    assert set(body["credentials"]) == {s.value for s in Status}
    assert body["queues"] == {"rotations": 0, "rotations-poison": 0}
    for secret in redact.registered():
        assert secret not in response.get_body().decode()


def test_health_asks_for_attention_while_a_rotation_sits_in_the_poison_queue(host, broker):
    poison = function_app._get_queues().poison
    poison.send(RotationMessage("poisoned-one", None, datetime.now(UTC)).dumps())
    try:
        request = func.HttpRequest("GET", "http://localhost/api/health", body=b"",
                                   headers={"x-functions-key": "k"})
        response = host.run("health", request)
    finally:
        poison.clear()
    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert body["status"] == "attention" and body["queues"]["rotations-poison"] == 1


@pytest.mark.slow
def test_a_due_scan_over_200_credentials_rotates_exactly_the_due_ones(host, broker, consented):
    """Done when: 200 credentials, about half due; eight invocations at a time drain the queue;
    every due one is rotated exactly once, no fresh one is touched, nothing is lost."""
    ages = [DUE_AGE_DAYS if i % 2 == 0 else FRESH_AGE_DAYS for i in range(200)]
    prefix = new_id("scale")
    ids = add_many(broker, consented, ages, prefix)
    due = {cid for cid, age in zip(ids, ages, strict=True) if age == DUE_AGE_DAYS}
    before = {c.id: c.latest.obtained_at for c in broker.list_credentials()
              if c.id.startswith(prefix)}
    started = time.monotonic()
    host.timer("rotate_due")
    enqueued = [m.credential_id for m in host.enqueued() if m.credential_id.startswith(prefix)]
    assert sorted(enqueued) == sorted(due)  # each due one once, nothing else
    host.drain(threads=8, deadline_s=120)
    elapsed = time.monotonic() - started
    after = {c.id: c.latest for c in broker.list_credentials() if c.id.startswith(prefix)}
    rotated = {cid for cid, latest in after.items() if latest.obtained_at != before[cid]}
    assert rotated == due
    assert all(after[cid].source is Source.ROTATION for cid in due)
    with ThreadPoolExecutor(8) as pool:
        counts = dict(zip(ids, pool.map(lambda c: version_count(broker, c), ids), strict=True))
    assert {counts[c] for c in due} == {3} and {counts[c] for c in set(ids) - due} == {2}
    assert host.queues.rotations.count() == 0 and host.queues.poison.count() == 0
    assert not {i.credential_id for i in broker.due()} & due
    print(f"\n200 credentials, {len(due)} due: enqueue + drain in {elapsed:.1f} s")
