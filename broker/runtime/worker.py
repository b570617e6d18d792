"""`broker worker` (and `make run`): the Functions app's jobs without the Functions host.

The same due-scan and validation run on the same NCRONTAB schedules (`broker.runtime.schedule`
fires them as the host does), and the same per-credential job drains the `rotations` queue with
the host's retry and poison rule (`broker.runtime.queues.QueueProcessor`). Queues are Azure
Storage when `AzureWebJobsStorage` is set (so a local worker can share Azurite with the tests,
or a real account), else in-process; leases are the broker's embedded default (file locks)
unless storage is configured. Like the host's `use_monitor`, each timer's schedule status is
kept on disk (`<state_dir>/timers/<name>.json`), so a run missed while the worker was stopped
happens on the next start, marked past due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from broker import jobs
from broker.errors import BrokerError, SettingsError
from broker.logs import bound, get_logger
from broker.queue import RECEIVE_VISIBILITY_S, Queues, Received, uses_storage_queues
from broker.runtime.queues import MemoryQueue, QueueProcessor, poison_queues, queues_from_settings
from broker.runtime.schedule import InvalidSchedule, Schedule, parse_schedule

if TYPE_CHECKING:
    from broker.service import Broker
    from broker.settings import Settings

log = get_logger(__name__)

MIN_POLL_S = 0.05
MAX_POLL_S = 2.0  # the host backs off to maxPollingInterval; locally two seconds is plenty


@dataclass
class _Timer:
    name: str
    schedule: Schedule
    job: Callable[[], object]
    status_path: Path
    next: datetime | None = None
    past_due: bool = False

    def start(self, now: datetime) -> None:
        """Resume from the stored status: a `next` already passed means a missed run."""
        status = _read_status(self.status_path)
        stored_next = status.get("next") if status.get("schedule") == self.schedule.expression \
            else None
        if stored_next is not None and stored_next <= now:
            self.next, self.past_due = now, True
        else:
            self.next = stored_next or self.schedule.next_after(now)
        self._save(last=status.get("last"))

    def run(self, now: datetime) -> None:
        with bound():
            if self.past_due:
                log.warning("timer %s is past due (the worker was stopped at %s); running now",
                            self.name, f"{self.next:%Y-%m-%d %H:%M:%S} UTC")
            started = datetime.now(UTC)
            try:
                result = self.job()
            except Exception as exc:  # a failed run waits for its next occurrence
                log.error("timer %s failed: %s", self.name,
                          exc if isinstance(exc, BrokerError) else type(exc).__name__)
            else:
                count = len(result) if isinstance(result, list) else result
                log.info("timer %s done in %.1f s (%s)", self.name,
                         (datetime.now(UTC) - started).total_seconds(), count)
        self.past_due = False
        self.next = self.schedule.next_after(max(now, datetime.now(UTC)))
        self._save(last=now)

    def _save(self, *, last: datetime | None) -> None:
        status = {"schedule": self.schedule.expression,
                  "last": last.isoformat() if last else None,
                  "next": self.next.isoformat() if self.next else None,
                  "last_updated": datetime.now(UTC).isoformat()}
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(status))
            tmp.replace(self.status_path)
        except OSError as exc:
            log.warning("cannot record the schedule status of %s: %s", self.name, exc)


def _read_status(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return {"schedule": data.get("schedule"),
                "last": _instant(data.get("last")), "next": _instant(data.get("next"))}
    except (OSError, ValueError, AttributeError):
        return {}


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _schedule(setting: str, expression: str) -> Schedule:
    try:
        return parse_schedule(expression)
    except InvalidSchedule as exc:
        raise SettingsError(setting, f"{setting}: {exc}") from None


def run_worker(settings: Settings, *, stop_event: threading.Event | None = None,
               service: Broker | None = None, queues: Queues | None = None,
               threads: int | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `stop_event`); returns 0 after a clean stop.

    Raises SettingsError (naming the setting) before starting anything if a schedule is not an
    NCRONTAB expression the Functions host would accept.
    """
    rotate_schedule = _schedule("BROKER_ROTATE_SCHEDULE", settings.rotate_schedule)
    validate_schedule = _schedule("BROKER_VALIDATE_SCHEDULE", settings.validate_schedule)
    from broker import logs

    if not logging.getLogger().handlers:
        logs.configure()
    logs.quiet_sdks()  # one line per job is the worker's log
    if service is None:
        from broker.service import Broker

        service = Broker(settings)
    queues = queues or queues_from_settings(settings)
    stop = stop_event or threading.Event()
    count = threads or settings.rotate_concurrency
    timers_dir = Path(settings.state_dir) / "timers"
    timers = [
        _Timer("rotate_due", rotate_schedule,
               lambda: jobs.enqueue_due(service, queues.rotations), timers_dir / "rotate_due.json"),
        _Timer("validate_all", validate_schedule,
               lambda: jobs.enqueue_validations(service, queues.rotations),
               timers_dir / "validate_all.json"),
    ]
    consumers = [
        threading.Thread(target=_consume, name=f"rotate-{i + 1}", daemon=True,
                         args=(QueueProcessor(queues), _rotate(service), stop))
        for i in range(count)
    ] + [threading.Thread(target=_consume, name="poison", daemon=True,
                          args=(QueueProcessor(poison_queues(settings, queues.poison)),
                                _poison(service), stop))]
    with _signals(stop):
        log.info("worker started: %d rotation threads on %s (%s), rotate %r, validate %r",
                 count, queues.rotations.name,
                 "Azure Storage" if uses_storage_queues(settings) else "in process",
                 rotate_schedule.expression, validate_schedule.expression)
        for thread in consumers:
            thread.start()
        now = datetime.now(UTC)
        for timer in timers:
            timer.start(now)
        while not stop.is_set():
            timer = min(timers, key=lambda t: t.next)
            wait = (timer.next - datetime.now(UTC)).total_seconds()
            if wait > 0:
                stop.wait(min(wait, 60.0))  # re-check: the wall clock may jump (sleep, NTP)
                continue
            timer.run(timer.next)
        log.info("worker stopping: finishing the messages in hand")
        for thread in consumers:
            thread.join()
    left = queues.rotations.count() if isinstance(queues.rotations, MemoryQueue) else 0
    if left:
        log.info("%d queued rotations were in memory; the next due-scan finds them again", left)
    log.info("worker stopped")
    return 0


def _rotate(service: Broker) -> Callable[[Received], object]:
    return lambda message: jobs.handle_message(service, message.body)


def _poison(service: Broker) -> Callable[[Received], object]:
    return lambda message: jobs.poison_message(service, message.body)


def _consume(processor: QueueProcessor, handler: Callable[[Received], object],
             stop: threading.Event) -> None:
    """One host-like listener thread: receive one message, run it, settle it; back off when
    the queue is empty. A message in hand is always finished before stopping."""
    queue = processor.queues.rotations
    idle = MIN_POLL_S
    while not stop.is_set():
        try:
            batch = queue.receive(1, visibility_s=RECEIVE_VISIBILITY_S)
        except BrokerError as exc:
            log.warning("cannot receive from %s: %s", queue.name, exc)
            stop.wait(MAX_POLL_S)
            continue
        if not batch:
            if isinstance(queue, MemoryQueue):
                queue.wait(min(idle, 0.25))  # wakes on a send; bounded so a stop is seen
            else:
                stop.wait(idle)
            idle = min(idle * 2, MAX_POLL_S)
            continue
        idle = MIN_POLL_S
        for message in batch:
            try:
                outcome = processor.process(message, handler)
            except BrokerError as exc:  # settling failed: the message reappears by itself
                log.warning("message %s on %s: %s", message.id, queue.name, exc)
                continue
            log.debug("message %s on %s, try %d: %s", message.id, queue.name,
                      message.dequeue_count, outcome)


@contextlib.contextmanager
def _signals(stop: threading.Event):
    """SIGINT and SIGTERM set `stop` (only the main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
