"""NCRONTAB, the grammar the Azure Functions timer trigger reads its schedules in.

The settings loader checks `BROKER_ROTATE_SCHEDULE` and `BROKER_VALIDATE_SCHEDULE` with this at
start-up, so a schedule the host would refuse stops every process (CLI, worker, Functions app)
with a SettingsError naming the variable, not only the local worker. NCrontab: six fields,
seconds first, day-of-week 0-6, names matched by prefix. `normalize` holds an expression to that
grammar and rewrites it into plain numbers (what croniter computes occurrences from in
`broker.runtime.schedule`); pure Python, so the consumer install needs no croniter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _DAYS),
)
_ITEM = re.compile(r"^(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


class InvalidSchedule(ValueError):
    """The expression is not one the Functions host would accept; the message says why."""


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years


def normalize(expression: str) -> str:
    """The six-field expression in plain numbers, or InvalidSchedule naming the bad field."""
    parts = expression.split() if isinstance(expression, str) else []
    if len(parts) != len(_FIELDS):
        raise InvalidSchedule(
            f"{expression!r} is not an NCRONTAB expression: Azure Functions wants six fields "
            "'{second} {minute} {hour} {day} {month} {day-of-week}', e.g. '0 0 1 * * *'"
        )
    normalized = [_normalize(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    days, months = (_expand(text, spec) for text, spec in
                    ((normalized[3], _FIELDS[3]), (normalized[4], _FIELDS[4])))
    if not any(day <= _DAYS_IN_MONTH[month - 1] for day in days for month in months):
        raise InvalidSchedule(f"{expression!r} never fires: no such day in those months")
    return " ".join(normalized)


def _expand(text: str, spec: _Field) -> set[int]:
    """The values a normalized field stands for (`*`, `*/S`, `N`, `N-M`, `N-M/S`, lists)."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        first, last = (spec.low, spec.high) if base == "*" else (
            (int(base.split("-")[0]), int(base.split("-")[-1])))
        values.update(range(first, last + 1, int(step or 1)))
    return values


def _normalize(text: str, spec: _Field) -> str:
    return ",".join(_item(item, spec) for item in text.split(","))


def _item(item: str, spec: _Field) -> str:
    match = _ITEM.match(item)
    if not match:
        raise InvalidSchedule(f"{item!r} is not a valid {spec.name} (use *, N, N-M, */S or N-M/S)")
    base, step = match["base"], match["step"]
    if step is not None and int(step) == 0:
        raise InvalidSchedule(f"the step in {item!r} ({spec.name}) must be at least 1")
    if base == "*":
        return "*" if step is None else f"*/{int(step)}"
    if "-" in base:
        first, last = (_value(v, spec) for v in base.split("-"))
        if first > last:
            raise InvalidSchedule(f"{item!r}: the {spec.name} range runs backwards")
    else:
        first = _value(base, spec)
        # NCrontab reads "N/S" as N to the field's maximum in steps of S
        last = spec.high if step is not None else first
    text = str(first) if first == last else f"{first}-{last}"
    return text if step is None else f"{text}/{int(step)}"


def _value(text: str, spec: _Field) -> int:
    if text.isdigit():
        value = int(text)
    elif spec.names:
        # NCrontab takes any prefix of the English name, first match wins ("Ju" is June)
        lowered = text.lower()
        found = [i for i, name in enumerate(spec.names) if name.startswith(lowered)]
        if not found:
            raise InvalidSchedule(f"{text!r} is not a {spec.name} name")
        value = found[0] + spec.low
    else:
        raise InvalidSchedule(f"{text!r} is not a number ({spec.name})")
    if not spec.low <= value <= spec.high:
        raise InvalidSchedule(
            f"{spec.name} {value} is out of range {spec.low}-{spec.high}"
        )
    return value
