"""broker.queue against Azurite (the real Storage queue protocol) and its in-process twin
(broker.runtime.queues): the wire encoding the Functions host expects, dequeue counts, delays
and the host's poison rule."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from azure.storage.queue import QueueClient

from broker.errors import AccessDenied, TransientFailure
from broker.queue import (
    MAX_DEQUEUE_COUNT,
    InvalidMessage,
    Queues,
    RotationMessage,
    StorageQueue,
    storage_queue,
)
from broker.runtime.queues import MemoryQueue, QueueProcessor, queues_from_settings
from broker.settings import Settings

NOW = datetime(2025, 1, 1, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**overrides) -> Settings:
    return Settings(vault_url="https://kv.vault.azure.net", **overrides)


@pytest.fixture
def names() -> tuple[str, str]:
    base = f"q{uuid.uuid4().hex[:12]}"
    return base, f"{base}-poison"


@pytest.fixture
def storage(azurite, names) -> Queues:
    config = settings(storage=azurite)
    return Queues(storage_queue(config, names[0]), storage_queue(config, names[1]))


@pytest.fixture
def memory(names) -> tuple[Queues, Clock]:
    clock = Clock()
    return Queues(MemoryQueue(names[0], clock=clock), MemoryQueue(names[1], clock=clock)), clock


def drain(queue, handler, processor: QueueProcessor, *, rounds: int = 20) -> list[str]:
    dispositions = []
    for _ in range(rounds):
        batch = queue.receive(1)
        if not batch:
            break
        dispositions.append(processor.process(batch[0], handler))
    return dispositions


# -- the message ------------------------------------------------------------------------------


def test_a_message_names_a_credential_and_a_version_and_nothing_else():
    message = RotationMessage("contoso-prod", "a" * 32, NOW)
    assert json.loads(message.dumps()) == {"credential_id": "contoso-prod", "version": "a" * 32,
                                           "enqueued_at": "2025-01-01T01:00:00+00:00"}
    assert RotationMessage.loads(message.dumps()) == message
    assert RotationMessage.loads(RotationMessage("x", None, NOW).dumps()).version is None


@pytest.mark.parametrize("body", [
    "", "not json", "[]", "{}", '{"credential_id": "x"}',
    '{"credential_id": "Bad Id", "version": null, "enqueued_at": "2025-01-01T00:00:00"}',
    '{"credential_id": "../x", "version": null, "enqueued_at": "2025-01-01T00:00:00"}',
    '{"credential_id": "x", "version": "v/1", "enqueued_at": "2025-01-01T00:00:00"}',
    '{"credential_id": "x", "version": null, "enqueued_at": "yesterday"}',
    b"\xff\xfe",
])
def test_anything_else_on_the_queue_is_refused(body):
    with pytest.raises(InvalidMessage):
        RotationMessage.loads(body)


# -- Azure Storage (Azurite) ------------------------------------------------------------------


def test_messages_are_base64_on_the_wire_as_host_json_tells_the_host(azurite, storage, names):
    body = RotationMessage("contoso", None, NOW).dumps()
    storage.rotations.send(body)
    raw = QueueClient.from_connection_string(azurite, names[0])  # no decoding: the raw text
    (wire,) = raw.peek_messages()
    assert base64.b64decode(wire.content).decode() == body
    assert storage.rotations.peek() == [body]


def test_each_receive_counts_one_more_dequeue_and_hides_the_message(storage):
    storage.rotations.send("one")
    (first,) = storage.rotations.receive(1)
    assert first.dequeue_count == 1 and first.body == "one"
    assert storage.rotations.receive(1) == []  # invisible while in hand
    storage.rotations.release(first, delay_s=0)
    (second,) = storage.rotations.receive(1)
    assert second.id == first.id and second.dequeue_count == 2
    storage.rotations.delete(second)
    assert storage.rotations.count() == 0


def test_a_delayed_message_stays_invisible_until_its_time(storage):
    storage.rotations.send("later", delay_s=2)
    storage.rotations.send("now")
    assert [m.body for m in storage.rotations.receive(32)] == ["now"]
    assert storage.rotations.count() == 2  # Azure counts invisible messages too
    time.sleep(2.2)
    assert [m.body for m in storage.rotations.receive(32)] == ["later"]


def test_the_host_rule_poisons_after_max_dequeue_count_real_dequeue_counts(storage):
    """Every try fails: tries 1..4 are released for another try, try 5 goes to -poison."""
    storage.rotations.send("doomed")
    seen = []

    def failing(message):
        seen.append(message.dequeue_count)
        raise RuntimeError("transient")

    processor = QueueProcessor(storage, visibility_timeout_s=0)
    assert drain(storage.rotations, failing, processor) == ["released"] * 4 + ["poisoned"]
    assert seen == list(range(1, MAX_DEQUEUE_COUNT + 1))
    assert storage.rotations.count() == 0
    assert storage.poison.peek() == ["doomed"]


def test_a_message_whose_tries_crashed_is_poisoned_without_running(storage):
    """DequeueCount above the maximum means the process died with it in hand each time."""
    storage.rotations.send("crashes")
    for _ in range(MAX_DEQUEUE_COUNT):
        (message,) = storage.rotations.receive(1)
        storage.rotations.release(message, delay_s=0)  # as if its invisibility ran out
    ran = []
    assert drain(storage.rotations, ran.append, QueueProcessor(storage)) == ["poisoned"]
    assert ran == [] and storage.poison.peek() == ["crashes"]


def test_success_deletes_and_a_stale_pop_receipt_changes_nothing(storage):
    storage.rotations.send("fine")
    (message,) = storage.rotations.receive(1, visibility_s=1)
    time.sleep(1.2)
    (again,) = storage.rotations.receive(1)  # someone else took it over
    storage.rotations.delete(message)  # stale receipt: ignored, as the host ignores it
    storage.rotations.release(message, delay_s=0)
    assert storage.rotations.count() == 1
    assert QueueProcessor(storage).process(again, lambda m: None) == "completed"
    assert storage.rotations.count() == 0


def test_queues_from_settings_use_azure_storage_when_azurewebjobsstorage_is_set(azurite):
    queues = queues_from_settings(settings(storage=azurite))
    assert isinstance(queues.rotations, StorageQueue) and queues.rotations.name == "rotations"
    assert queues.poison.name == "rotations-poison"
    local = queues_from_settings(settings())
    assert isinstance(local.rotations, MemoryQueue) and local.poison.name == "rotations-poison"


def test_identity_based_storage_reaches_the_account_queue_endpoint():
    by_name = storage_queue(settings(storage_account="brokerstore"), "rotations")
    assert by_name._client.url == "https://brokerstore.queue.core.windows.net/rotations"
    by_url = storage_queue(settings(storage_queue_url="https://q.example.net"), "rotations")
    assert by_url._client.url == "https://q.example.net/rotations"


def test_an_unreachable_queue_is_a_transient_failure_without_the_account_key():
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            + base64.b64encode(b"k" * 64).decode() +
            ";QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    queue = StorageQueue(QueueClient.from_connection_string(dead, "rotations", retry_total=0))
    with pytest.raises(TransientFailure) as caught:
        queue.send("x")
    assert "AccountKey" not in str(caught.value) and "k" * 20 not in str(caught.value)


def test_a_wrong_account_key_is_access_denied_naming_the_role(azurite, names):
    """Azurite refuses a bad signature with 403, as Azure Storage does."""
    parts = dict(part.split("=", 1) for part in azurite.split(";") if "=" in part)
    parts["AccountKey"] = base64.b64encode(b"w" * 64).decode()
    wrong = ";".join(f"{k}={v}" for k, v in parts.items())
    queue = storage_queue(settings(storage=wrong), names[0])
    with pytest.raises(AccessDenied) as caught:
        queue.send("x")
    assert caught.value.role == "Storage Queue Data Contributor"
    assert "Storage Queue Data Contributor" in caught.value.hint
    assert "w" * 20 not in str(caught.value) + caught.value.hint


# -- in process -------------------------------------------------------------------------------


def test_memory_queue_has_azures_visibility_and_dequeue_semantics(memory):
    queues, clock = memory
    queues.rotations.send("a", delay_s=60)
    queues.rotations.send("b")
    (b,) = queues.rotations.receive(5, visibility_s=600)
    assert b.body == "b" and b.dequeue_count == 1
    assert queues.rotations.receive(5) == []
    clock.now += 60
    (a,) = queues.rotations.receive(5)
    assert a.body == "a"
    queues.rotations.release(b, delay_s=30)
    clock.now += 29
    assert queues.rotations.receive(5) == []
    clock.now += 1
    (b2,) = queues.rotations.receive(5)
    assert b2.id == b.id and b2.dequeue_count == 2
    queues.rotations.delete(b)  # stale pop receipt
    assert queues.rotations.count() == 2
    queues.rotations.delete(b2)
    queues.rotations.delete(a)
    assert queues.rotations.count() == 0


def test_memory_queue_applies_the_same_poison_rule(memory):
    queues, clock = memory
    queues.rotations.send("doomed")
    seen = []

    def failing(message):
        seen.append(message.dequeue_count)
        raise RuntimeError("transient")

    processor = QueueProcessor(queues)  # the host's 30 s between tries, on the fake clock
    for _ in range(MAX_DEQUEUE_COUNT):
        (message,) = queues.rotations.receive(1)
        processor.process(message, failing)
        assert queues.rotations.receive(1) == []
        clock.now += processor.visibility_timeout_s
    assert seen == [1, 2, 3, 4, 5]
    assert queues.rotations.count() == 0 and queues.poison.peek() == ["doomed"]


def test_memory_queue_wait_returns_when_a_message_arrives():
    real = MemoryQueue("r")
    threading.Timer(0.1, real.send, args=("x",)).start()
    started = time.monotonic()
    real.wait(5)
    assert time.monotonic() - started < 2
    assert [m.body for m in real.receive(1)] == ["x"]


def test_memory_queue_hands_out_the_earliest_visible_first_without_sorting_the_rest(memory):
    queues, clock = memory
    for i in range(2000):  # a night's worth, visible over the next 2,000 s, sent out of order
        queues.rotations.send(f"m{(i * 7919) % 2000:04d}", delay_s=(i * 7919) % 2000)
    clock.now += 2000
    taken = [m.body for m in queues.rotations.receive(32)]
    assert taken == [f"m{i:04d}" for i in range(32)]
    # a receive looks at the few it hands out: its heap, not every entry
    queues.rotations._entries = _Counting(queues.rotations._entries)
    queues.rotations.receive(32)
    assert queues.rotations._entries.lookups <= 64


class _Counting(dict):
    """A dict that counts lookups by key (what a receive touches)."""

    lookups = 0

    def get(self, key, default=None):
        type(self).lookups += 1
        return super().get(key, default)

    def values(self):
        raise AssertionError("receive scanned every entry")
