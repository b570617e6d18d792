"""NCRONTAB schedules read exactly as the Azure Functions timer trigger reads them.

The local worker must fire `BROKER_ROTATE_SCHEDULE` at the instants Azure would, or "it works
locally" proves nothing. The host parses with NCrontab: six fields, seconds first, day-of-month
AND day-of-week (not cron's OR), day-of-week 0-6, names matched by prefix, UTC. croniter computes
the occurrences (`second_at_beginning=True, day_or=False`); this module first holds the expression
to NCrontab's grammar and rewrites it into plain numbers, because croniter also accepts five
fields, `L`, `W`, `#`, `H` and 7 for Sunday, which the host would refuse at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

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


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression; `next_after` is the next firing strictly after a moment."""

    expression: str
    _normalized: str

    def next_after(self, moment: datetime) -> datetime:
        """The next occurrence strictly after `moment` (naive datetimes are taken as UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        it = croniter(self._normalized, moment.astimezone(UTC),
                      second_at_beginning=True, day_or=False)
        return it.get_next(datetime).astimezone(UTC)

    def __str__(self) -> str:
        return self.expression


def parse_schedule(expression: str) -> Schedule:
    """Parse a six-field NCRONTAB expression or raise InvalidSchedule naming the bad field."""
    parts = expression.split() if isinstance(expression, str) else []
    if len(parts) != len(_FIELDS):
        raise InvalidSchedule(
            f"{expression!r} is not an NCRONTAB expression: Azure Functions wants six fields "
            "'{second} {minute} {hour} {day} {month} {day-of-week}', e.g. '0 0 1 * * *'"
        )
    normalized = " ".join(_normalize(part, spec) for part, spec in zip(parts, _FIELDS, strict=True))
    schedule = Schedule(expression=" ".join(parts), _normalized=normalized)
    try:
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except Exception as exc:  # croniter's own errors (e.g. day 31 in February only)
        raise InvalidSchedule(f"{expression!r} never fires: {exc}") from exc
    return schedule


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
