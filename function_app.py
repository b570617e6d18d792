"""Azure Functions (Python v2 programming model): thin triggers over `broker.jobs`.

Each function parses its trigger's input and hands plain data to a job; the rules live in
`broker/`, which the local worker (`broker worker`) runs too. Importing this module must stay
cheap because the Consumption and Flex plans import it on every cold start: nothing here touches
the network, and the Azure SDKs, MSAL and the broker itself are imported inside the handlers on
first use. One `Broker` (and its settings, vault client and queues) is built per worker process
and reused by every invocation. No `from __future__ import annotations`: the Python worker
checks each parameter's annotation against its binding, and real types need no resolving.
"""

import json
import logging
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("function_app")

ROTATIONS_QUEUE = "rotations"  # broker.queue.QUEUE_NAME (not imported: keeps the import light)
POISON_QUEUE = "rotations-poison"  # the host's own "<queue>-poison"
STORAGE_CONNECTION = "AzureWebJobsStorage"

_lock = threading.Lock()
_broker = None
_queues = None


def _get_broker():
    """The process's Broker, built on first use from the app settings (loaded once)."""
    global _broker
    if _broker is None:
        with _lock:
            if _broker is None:
                from broker import logs
                from broker.service import Broker

                logs.configure()  # redaction and ids on the host's log handler
                # the SDKs log every request at INFO: noise and cost in Application Insights
                logs.quiet_sdks()
                _broker = Broker()
    return _broker


def _get_queues():
    """The rotations queues on the account of AzureWebJobsStorage (shared with the host)."""
    global _queues
    if _queues is None:
        broker = _get_broker()
        with _lock:
            if _queues is None:
                from broker.queue import storage_queues

                _queues = storage_queues(broker.settings)
    return _queues


# The due-scan is idempotent (a duplicate message is a no-op), so a failed run may simply run
# again; use_monitor keeps the schedule in storage so a run missed while the app was down
# happens on the next start, marked past due.
@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:01:00")
@app.timer_trigger(arg_name="timer", schedule="%BROKER_ROTATE_SCHEDULE%", use_monitor=True,
                   run_on_startup=False)
def rotate_due(timer: func.TimerRequest) -> None:
    """Nightly: one message per due credential on `rotations`, spread over the night."""
    from broker import jobs

    if timer.past_due:
        log.warning("rotate_due is past due (the app was stopped or busy at the scheduled "
                    "time); running the due-scan now")
    jobs.enqueue_due(_get_broker(), _get_queues().rotations)


@app.queue_trigger(arg_name="message", queue_name=ROTATIONS_QUEUE,
                   connection=STORAGE_CONNECTION)
def rotate_one(message: func.QueueMessage) -> None:
    """One credential per message (a rotation, or a validation when the message says so).
    Raising (a transient failure) makes the host retry it after `visibilityTimeout`, up to
    `maxDequeueCount` tries, then move it to `rotations-poison`."""
    from broker import jobs

    log.info("rotations message %s, try %s", message.id, message.dequeue_count)
    jobs.handle_message(_get_broker(), message.get_body())


@app.queue_trigger(arg_name="message", queue_name=POISON_QUEUE, connection=STORAGE_CONNECTION)
def rotations_poison(message: func.QueueMessage) -> None:
    """A rotation that failed every try: the credential is flagged `error` and a human told."""
    from broker import jobs

    jobs.poison_message(_get_broker(), message.get_body())


@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:05:00")
@app.timer_trigger(arg_name="timer", schedule="%BROKER_VALIDATE_SCHEDULE%", use_monitor=True,
                   run_on_startup=False)
def validate_all(timer: func.TimerRequest) -> None:
    """Daily: one `validate` message per active credential on `rotations` (from one listing);
    `rotate_one` validates each, so no invocation's length grows with the fleet."""
    from broker import jobs

    if timer.past_due:
        log.warning("validate_all is past due; running it now")
    jobs.enqueue_validations(_get_broker(), _get_queues().rotations)


@app.event_grid_trigger(arg_name="event")
def secret_near_expiry(event: func.EventGridEvent) -> None:
    """Key Vault's SecretNearExpiry / SecretExpired from either vault: rotate a refresh token
    now, or tell a human what to renew (a partner app's secret, the CPV or operator secret)."""
    from broker import expiry

    try:
        data = event.get_json()
    except ValueError:
        data = None
    if event.event_type not in expiry.EXPIRY_EVENTS or not isinstance(data, dict) \
            or not expiry.watched(data.get("ObjectName")):
        log.info("event %s (%s) is not about a secret the broker watches; ignored", event.id,
                 event.event_type)
        return
    expiry.handle(_get_broker(), data, event_type=event.event_type)


@app.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Credentials per status and the queue depths; never a token, never a traceback."""
    from broker.errors import BrokerError

    try:
        counts = _get_broker().status_counts()
    except BrokerError as exc:
        log.warning("health: %s", exc)
        return _json({"status": "unavailable", "error": str(exc), "hint": exc.hint}, 503)
    except Exception as exc:
        log.warning("health: the broker could not start (%s)", type(exc).__name__)
        return _json({"status": "unavailable",
                      "error": "The broker could not start; see the function app's log."}, 503)
    queues: dict[str, int] = {}
    try:
        pair = _get_queues()
        queues = {pair.rotations.name: pair.rotations.count(),
                  pair.poison.name: pair.poison.count()}
    except BrokerError as exc:
        log.warning("health: queue depths unavailable: %s", exc)
    status = "attention" if queues.get(POISON_QUEUE) else "ok"
    return _json({"status": status, "credentials": counts, "total": sum(counts.values()),
                  "queues": queues}, 200)


def _json(body: dict, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers={"Cache-Control": "no-store"})
