"""`broker worker`: the due-scan and the per-credential job on NCRONTAB schedules without the
Functions host, with the embedded defaults (in-process queue, file leases) or Azurite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.credentials import Source
from broker.errors import SettingsError
from broker.locks import FileLeases
from broker.queue import StorageQueue
from broker.runtime.queues import MemoryQueue, queues_from_settings
from broker.runtime.worker import run_worker
from broker.service import Broker
from broker.settings import Settings, load_settings
from devstack import seed
from tests.integration.test_functions import DUE_AGE_DAYS, FRESH_AGE_DAYS, add_consented
from tests.support.browserless import consent_with_msal
from tests.support.devstack import environment, running_devstack

ROOT = Path(__file__).resolve().parents[2]
EVERY_SECOND = "*/1 * * * * *"
YEARLY = "0 0 0 1 1 *"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_devstack(tmp_path_factory.mktemp("worker-devstack")) as running, \
            environment(running.env):
        yield running


@pytest.fixture(scope="module")
def consented(stack) -> str:
    return consent_with_msal(stack.authority, seed.CPV_APP_ID,
                             stack.env["BROKER_CPV_CLIENT_SECRET"])["refresh_token"]


def worker_settings(stack, tmp_path: Path, **extra: str) -> Settings:
    values = {**stack.env, "BROKER_STATE_DIR": str(tmp_path / "state"),
              "BROKER_ROTATE_WINDOW_HOURS": "0", "BROKER_ROTATE_SCHEDULE": EVERY_SECOND,
              "BROKER_VALIDATE_SCHEDULE": YEARLY, "BROKER_ROTATE_CONCURRENCY": "4", **extra}
    return load_settings(values, dotenv=False)


class Running:
    """run_worker in a thread, stopped through its stop_event."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        self.stop = threading.Event()
        self.result: list = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(run_worker(settings, stop_event=self.stop,
                                                         **kwargs)), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker did not stop"


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def rotated(broker: Broker, credential_id: str) -> bool:
    return broker.get_credential(credential_id).latest.source is Source.ROTATION


def test_worker_rotates_due_credentials_on_a_per_second_schedule_in_process(
        stack, consented, tmp_path, caplog):
    settings = worker_settings(stack, tmp_path)
    broker = Broker(settings)
    assert isinstance(broker.leases, FileLeases)  # the embedded default
    due = [add_consented(broker, consented, DUE_AGE_DAYS) for _ in range(3)]
    fresh = add_consented(broker, consented, FRESH_AGE_DAYS)
    with caplog.at_level("INFO", logger="broker"), Running(settings, service=broker) as running:
        wait_until(lambda: all(rotated(broker, c) for c in due))
        time.sleep(1.5)  # more per-second scans: the rotated ones are no longer due
    assert running.result == [0]
    for credential_id in due:
        assert len(broker.versions(credential_id)) == 3  # placeholder, consent, one rotation
    assert len(broker.versions(fresh)) == 2
    text = caplog.text
    assert "worker started: 4 rotation threads on rotations (in process)" in text
    assert "timer rotate_due done" in text
    for credential_id in due:
        assert f"rotate {credential_id}: rotated" in text
    assert "worker stopped" in text
    status = json.loads((tmp_path / "state" / "timers" / "rotate_due.json").read_text())
    assert status["schedule"] == EVERY_SECOND and status["last"] is not None


def test_worker_uses_the_azure_storage_queue_and_blob_leases_when_storage_is_set(
        stack, consented, azurite, tmp_path, caplog):
    settings = worker_settings(stack, tmp_path, AzureWebJobsStorage=azurite)
    queues = queues_from_settings(settings)
    assert isinstance(queues.rotations, StorageQueue)
    queues.rotations.clear()
    broker = Broker(settings)
    assert not isinstance(broker.leases, FileLeases)
    due = [add_consented(broker, consented, DUE_AGE_DAYS) for _ in range(2)]
    with caplog.at_level("INFO", logger="broker"), Running(settings, service=broker):
        wait_until(lambda: all(rotated(broker, c) for c in due))
    assert "(Azure Storage)" in caplog.text
    assert all(len(broker.versions(c)) == 3 for c in due)


def test_a_run_missed_while_stopped_happens_at_start_marked_past_due(
        stack, consented, tmp_path, caplog):
    settings = worker_settings(stack, tmp_path, BROKER_ROTATE_SCHEDULE=YEARLY)
    broker = Broker(settings)
    due = add_consented(broker, consented, DUE_AGE_DAYS)
    timers = tmp_path / "state" / "timers"
    timers.mkdir(parents=True)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    (timers / "rotate_due.json").write_text(json.dumps({
        "schedule": YEARLY, "last": (yesterday - timedelta(days=365)).isoformat(),
        "next": yesterday.isoformat()}))
    with caplog.at_level("INFO", logger="broker"), Running(settings, service=broker):
        wait_until(lambda: rotated(broker, due))
    assert "timer rotate_due is past due" in caplog.text
    status = json.loads((timers / "rotate_due.json").read_text())
    # the missed run was made up, and the timer now waits for the next 1 January, whatever
    # today's date is (a fixed "30 days ahead" failed every December)
    next_run = datetime.fromisoformat(status["next"])
    assert next_run > datetime.now(UTC)
    assert (next_run.month, next_run.day, next_run.hour, next_run.minute) == (1, 1, 0, 0)


def test_an_invalid_schedule_stops_the_worker_before_it_starts(stack, tmp_path):
    settings = replace(worker_settings(stack, tmp_path), rotate_schedule="0 0 25 * * *")
    with pytest.raises(SettingsError) as caught:
        run_worker(settings, stop_event=threading.Event(), queues=None, service=object())
    assert caught.value.setting == "BROKER_ROTATE_SCHEDULE"
    assert "hour 25" in str(caught.value)


def test_worker_with_no_due_credentials_idles_and_stops_at_once(stack, tmp_path):
    settings = worker_settings(stack, tmp_path, BROKER_ROTATE_SCHEDULE=YEARLY)
    queues = queues_from_settings(settings)
    assert isinstance(queues.rotations, MemoryQueue)
    with Running(settings, queues=queues) as running:
        time.sleep(0.5)
        started = time.monotonic()
        running.stop.set()
        running.thread.join(10)
        assert time.monotonic() - started < 2
    assert running.result == [0]


def test_sigterm_stops_a_worker_process_cleanly(stack, tmp_path):
    env = {**os.environ, **stack.env, "BROKER_STATE_DIR": str(tmp_path / "state"),
           "BROKER_ROTATE_SCHEDULE": YEARLY, "BROKER_VALIDATE_SCHEDULE": YEARLY}
    env.pop("AzureWebJobsStorage", None)
    code = ("import sys; from broker.settings import load_settings; "
            "from broker.runtime.worker import run_worker; sys.exit(run_worker(load_settings()))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while not any("worker started" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, "".join(lines) + out
    assert "worker stopped" in out
    assert "Traceback" not in "".join(lines) + out
