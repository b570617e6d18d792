from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from broker.logs import (
    MASK,
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    bound,
    configure,
    correlation_id,
    credential_id,
    get_logger,
    install_filters,
    redact,
)

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJodHRwczovL2FwaSJ9."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
REFRESH = "0.AXYAbc" + "Q" * 60 + ".AgABAAEAAAD" + "z" * 40


def secret() -> str:
    value = f"planted-{uuid.uuid4().hex}"
    redact.register(value)
    return value


@pytest.fixture
def captured():
    """A handler with the broker's filters on a private logger, its output as text."""
    stream = io.StringIO()
    handler = install_filters(logging.StreamHandler(stream))
    handler.setFormatter(logging.Formatter("%(credential_id)s %(correlation_id)s %(message)s"))
    logger = get_logger(f"test.logs.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize("text", [
    f"token {JWT} end", f"rt={REFRESH}", f'{{"refresh_token": "{REFRESH}"}}',
    f"Authorization: Bearer {JWT}",
])
def test_token_shapes_are_redacted(text):
    cleaned = redact(text)
    assert JWT not in cleaned and REFRESH not in cleaned and MASK in cleaned


def test_registered_values_are_redacted_and_remembered():
    value = secret()
    assert redact(f"x{value}y") == f"x{MASK}y"
    assert value in redact.registered()


@pytest.mark.parametrize("value", [None, "", "short"])
def test_short_values_are_not_registered(value):
    redact.register(value)
    assert value not in redact.registered()


def test_ordinary_text_is_left_alone():
    text = "rotated contoso-test version 0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d at 10:00"
    assert redact(text) == text


def test_message_args_exception_and_stack_are_redacted(captured):
    logger, stream = captured
    value = secret()
    logger.info("got %s and %s", value, JWT)
    try:
        raise ValueError(f"boom {value}")
    except ValueError:
        logger.exception("failed with %r", {"token": value})
    logger.warning("stack", stack_info=True, extra={"note": value})
    output = stream.getvalue()
    assert value not in output and JWT not in output
    assert "boom [redacted]" in output and "Traceback" in output


def test_a_broken_format_string_does_not_lose_the_record(captured):
    logger, stream = captured
    value = secret()
    logger.info("only one %s %s", value)
    assert stream.getvalue().strip()
    assert value not in stream.getvalue()


def test_context_ids_are_on_every_record(captured):
    logger, stream = captured
    with bound(credential="contoso-test", correlation="corr-1") as cid:
        assert cid == "corr-1"
        logger.info("inside")
    logger.info("outside")
    inside, outside = stream.getvalue().splitlines()
    assert inside == "contoso-test corr-1 inside"
    assert outside == "None None outside"
    assert credential_id.get() is None and correlation_id.get() is None


def test_bound_makes_a_correlation_id_and_nests():
    with bound(credential="a") as outer:
        assert len(outer) == 16
        with bound(credential="b") as inner:
            assert inner == outer and credential_id.get() == "b"
        assert credential_id.get() == "a"


def test_json_formatter_writes_one_object_per_record():
    record = logging.LogRecord("broker.x", logging.INFO, __file__, 1, "hello %s", ("world",),
                               None)
    ContextFilter().filter(record)
    RedactingFilter().filter(record)
    with bound(credential="ignored"):
        entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world" and entry["level"] == "INFO"
    assert entry["logger"] == "broker.x" and entry["time"].endswith("Z")
    assert "credential_id" not in entry  # captured when logged, not when formatted


@pytest.fixture
def clean_root():
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield root
    root.handlers, root.level = saved, level


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if getattr(h, "_broker_handler", False)]


def test_configure_filters_the_host_handlers_without_adding_one(clean_root):
    host_handler = logging.StreamHandler(io.StringIO())  # as the Functions host installs
    clean_root.addHandler(host_handler)
    configure("DEBUG")
    assert ours(clean_root) == [] and clean_root.level == logging.DEBUG
    assert any(isinstance(f, RedactingFilter) for f in host_handler.filters)


def test_configure_adds_one_stderr_handler_when_there_is_none(clean_root):
    clean_root.handlers = []
    configure("INFO", json=True)
    configure("INFO", json=True)
    [handler] = clean_root.handlers
    assert ours(clean_root) == [handler] and isinstance(handler.formatter, JsonFormatter)
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    assert clean_root.level == logging.INFO


def test_text_lines_name_only_the_context_ids_that_are_set():
    formatter = TextFormatter()
    record = logging.LogRecord("broker.x", logging.INFO, __file__, 1, "rotated", None, None)
    record.credential_id, record.correlation_id = None, None
    assert formatter.format(record).endswith(" broker.x rotated")
    record.credential_id = "contoso"
    assert formatter.format(record).endswith(" broker.x [credential=contoso] rotated")


def test_the_redactor_keeps_the_most_recent_values_up_to_its_capacity():
    from broker.logs import Redactor

    small = Redactor(capacity=3)
    values = [f"secret-value-{i:04d}-{uuid.uuid4().hex}" for i in range(5)]
    heard = []
    small.listeners.append(heard.append)
    for value in values:
        small.register(value)
    small.register(values[2])  # used again: the most recent now
    assert small.registered() == {values[2], values[3], values[4]}
    assert heard == values  # every registration is heard, once
    text = " ".join(values)
    cleaned = small(text)
    assert values[2] not in cleaned and values[4] not in cleaned
    assert values[0] in cleaned  # evicted: no longer masked by value


def test_values_sharing_a_prefix_are_each_masked_longest_first():
    from broker.logs import Redactor

    redactor = Redactor()
    short, longer = "prefix-abcdefgh", "prefix-abcdefgh-and-more"
    redactor.register(short)
    redactor.register(longer)
    assert redactor(f"a {longer} b {short} c") == f"a {MASK} b {MASK} c"


def test_a_long_line_against_many_values_is_checked_by_position_not_by_value():
    from broker.logs import Redactor

    redactor = Redactor(capacity=20_000)
    for i in range(20_000):
        redactor.register(f"tok-{i:06d}-{uuid.uuid4().hex}")
    planted = f"tok-zzzzzz-{uuid.uuid4().hex}"
    redactor.register(planted)
    line = ("x" * 5000) + planted + ("y" * 5000)
    assert redactor(line) == ("x" * 5000) + MASK + ("y" * 5000)
