"""What function_app.py declares to the Functions host, read back from the function metadata the
Python worker indexes, and what its handlers do with the SDK's own trigger objects when the
broker cannot start (no network is used here)."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import typing
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessageInConverter

import function_app
from broker import queue as rotation_queue
from broker.runtime.schedule import parse_schedule
from broker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = json.loads((ROOT / "host.json").read_text())
EXPECTED = {"rotate_due", "rotate_one", "rotations_poison", "validate_all", "secret_near_expiry",
            "health"}


@pytest.fixture(scope="module")
def functions() -> dict[str, func.FunctionApp]:
    # the worker imports function_app once per process and indexes it once; get_functions()
    # refuses to index one app twice, so this module takes a fresh import of its own
    module = importlib.reload(function_app)
    return {f.get_function_name(): f for f in module.app.get_functions()}


def bindings(function) -> list[dict]:
    return json.loads(function.get_function_json())["bindings"]


def trigger(function) -> dict:
    (found,) = [b for b in bindings(function) if b["type"].endswith("Trigger")]
    return found


def test_the_app_registers_exactly_the_six_functions(functions):
    assert set(functions) == EXPECTED
    for function in functions.values():
        assert function.function_script_file.endswith("function_app.py")


def test_each_trigger_matches_its_parameter_type_as_the_python_worker_checks_it(functions):
    registry = meta.get_binding_registry()
    for name, function in functions.items():
        binding = trigger(function)
        user_function = function.get_user_function()
        hints = typing.get_type_hints(user_function)  # what the worker does at indexing
        converter = registry.get(binding["type"])
        assert converter is not None, name
        assert converter.check_input_type_annotation(hints[binding["name"]]), name


def test_rotate_due_is_a_monitored_timer_on_the_rotate_schedule_setting_with_retries(functions):
    function = functions["rotate_due"]
    assert trigger(function) == {"direction": "IN", "type": "timerTrigger", "name": "timer",
                                 "schedule": "%BROKER_ROTATE_SCHEDULE%", "useMonitor": True,
                                 "runOnStartup": False}
    retry = function.get_settings_dict("retry_policy")
    assert retry["strategy"] == "fixed_delay" and int(retry["max_retry_count"]) >= 1


def test_validate_all_is_a_monitored_timer_on_the_validate_schedule_setting(functions):
    binding = trigger(functions["validate_all"])
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%BROKER_VALIDATE_SCHEDULE%"
    assert binding["useMonitor"] is True and binding["runOnStartup"] is False


def test_rotate_one_reads_the_rotations_queue_of_azurewebjobsstorage(functions):
    assert trigger(functions["rotate_one"]) == {
        "direction": "IN", "type": "queueTrigger", "name": "message",
        "queueName": rotation_queue.QUEUE_NAME, "connection": "AzureWebJobsStorage"}
    assert rotation_queue.QUEUE_NAME == "rotations"


def test_rotations_poison_reads_the_queue_the_host_moves_failures_to(functions):
    binding = trigger(functions["rotations_poison"])
    assert binding["type"] == "queueTrigger"
    assert binding["queueName"] == f"{rotation_queue.QUEUE_NAME}-poison"
    assert binding["queueName"] == rotation_queue.POISON_QUEUE_NAME
    assert binding["connection"] == "AzureWebJobsStorage"


def test_secret_near_expiry_is_an_event_grid_trigger_named_as_the_subscription_expects(functions):
    assert trigger(functions["secret_near_expiry"]) == {
        "direction": "IN", "type": "eventGridTrigger", "name": "event"}
    bicep = ROOT / "infra" / "modules" / "eventgrid.bicep"
    if bicep.exists():  # the subscription targets the function by name
        assert "/functions/secret_near_expiry" in bicep.read_text()


def test_health_is_a_get_only_http_trigger_that_needs_a_function_key(functions):
    found = bindings(functions["health"])
    http = trigger(functions["health"])
    assert http["authLevel"] == "FUNCTION"
    assert http["methods"] == ["GET"] and http["route"] == "health"
    assert {"direction": "OUT", "type": "http", "name": "$return"} in found


def test_host_json_matches_what_the_queue_code_and_the_plans_assume():
    assert HOST_JSON["version"] == "2.0"
    queues = HOST_JSON["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # what broker.queue sends
    assert queues["maxDequeueCount"] == rotation_queue.MAX_DEQUEUE_COUNT == 5
    h, m, s = (int(x) for x in queues["visibilityTimeout"].split(":"))
    assert h * 3600 + m * 60 + s == rotation_queue.VISIBILITY_TIMEOUT_S
    assert 1 <= queues["newBatchThreshold"] < queues["batchSize"] <= 32
    h, m, s = (int(x) for x in HOST_JSON["functionTimeout"].split(":"))
    assert 0 < h * 3600 + m * 60 + s <= 600  # the Consumption plan's maximum, Flex's too
    bundle = HOST_JSON["extensionBundle"]
    assert bundle == {"id": "Microsoft.Azure.Functions.ExtensionBundle",
                      "version": "[4.*, 5.0.0)"}
    assert HOST_JSON["logging"]["logLevel"]["default"] in ("Warning", "Information")


def test_the_default_schedules_are_ones_the_host_accepts():
    fields = Settings.__dataclass_fields__
    for name in ("rotate_schedule", "validate_schedule"):
        parse_schedule(fields[name].default)


def test_importing_function_app_touches_no_heavy_module():
    probe = ("import sys, function_app; heavy = ('broker', 'msal', 'azure.identity', "
             "'azure.keyvault', 'azure.storage', 'requests', 'croniter'); "
             "print([m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- handlers with the SDK's trigger objects, when the broker cannot start ---------------------


@pytest.fixture
def no_settings(monkeypatch, tmp_path):
    """No vault configured (and no .env to find one in): the broker refuses to start."""
    monkeypatch.delenv("BROKER_VAULT_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(function_app, "_broker", None)
    monkeypatch.setattr(function_app, "_queues", None)


def event(event_type: str, name: str) -> func.EventGridEvent:
    body = {"id": "e1", "topic": "/subscriptions/x/resourceGroups/rg/providers/"
            "Microsoft.KeyVault/vaults/kv", "subject": name, "eventType": event_type,
            "eventTime": datetime.now(UTC).isoformat(), "dataVersion": "1",
            "data": {"Id": f"https://kv.vault.azure.net/secrets/{name}/{'a' * 32}",
                     "VaultName": "kv", "ObjectType": "Secret", "ObjectName": name,
                     "Version": "a" * 32, "NBF": None, "EXP": 1767225600}}
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(body), "json"),
                                            trigger_metadata={})


def test_health_without_settings_answers_503_naming_the_setting_without_a_traceback(
        functions, no_settings):
    request = func.HttpRequest("GET", "http://localhost/api/health", body=b"", params={})
    response = functions["health"].get_user_function()(request)
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body["status"] == "unavailable"
    assert "BROKER_VAULT_URL" in body["error"] and body["hint"]
    assert "Traceback" not in response.get_body().decode()
    assert function_app._broker is None  # the next call tries again


@pytest.mark.parametrize(("event_type", "name"), [
    ("Microsoft.KeyVault.SecretNewVersionCreated", "rt-contoso"),
    ("Microsoft.KeyVault.CertificateNearExpiry", "rt-contoso"),
    ("Microsoft.KeyVault.SecretNearExpiry", "notify-webhook-url"),
])
def test_events_about_nothing_the_broker_watches_are_ignored_without_the_broker(
        functions, no_settings, event_type, name):
    assert functions["secret_near_expiry"].get_user_function()(event(event_type, name)) is None
    assert function_app._broker is None


# a refresh token, a partner app's client secret, the broker's own CPV and operator secrets
@pytest.mark.parametrize("name", ["rt-contoso", "cs-contoso", "cpv-client-secret",
                                  "operator-client-secret"])
def test_an_expiry_event_about_a_watched_secret_needs_the_broker(functions, no_settings, name):
    from broker.errors import SettingsError

    with pytest.raises(SettingsError, match="BROKER_VAULT_URL"):
        functions["secret_near_expiry"].get_user_function()(
            event("Microsoft.KeyVault.SecretNearExpiry", name))


def test_a_queue_message_is_refused_loudly_when_the_broker_cannot_start(functions, no_settings):
    from broker.errors import SettingsError

    message = QueueMessageInConverter.decode(
        meta.Datum('{"credential_id":"x"}', "string"),
        trigger_metadata={"Id": meta.Datum("m1", "string"),
                          "DequeueCount": meta.Datum("1", "json"),
                          "PopReceipt": meta.Datum("p", "string")})
    # raising is what makes the host retry and finally park the message in rotations-poison
    with pytest.raises(SettingsError):
        functions["rotate_one"].get_user_function()(message)


def test_function_metadata_is_json_without_secret_looking_values(functions):
    for function in functions.values():
        text = function.get_function_json()
        assert not re.search(r"(?i)(secret|password|accountkey)=", text)
