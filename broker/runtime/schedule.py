"""NCRONTAB schedules fired exactly as the Azure Functions timer trigger fires them.

The local worker must fire `BROKER_ROTATE_SCHEDULE` at the instants Azure would, or "it works
locally" proves nothing. The host parses with NCrontab: six fields, seconds first, day-of-month
AND day-of-week (not cron's OR), day-of-week 0-6, UTC. `broker.ncrontab` holds the expression
to NCrontab's grammar (croniter also accepts five fields, `L`, `W`, `#`, `H` and 7 for Sunday,
which the host would refuse) and rewrites it into plain numbers; croniter computes the
occurrences from those (`second_at_beginning=True, day_or=False`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from broker.ncrontab import InvalidSchedule, normalize

__all__ = ["InvalidSchedule", "Schedule", "parse_schedule"]


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
    normalized = normalize(expression)
    schedule = Schedule(expression=" ".join(expression.split()), _normalized=normalized)
    try:
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except Exception as exc:  # croniter's own errors
        raise InvalidSchedule(f"{expression!r} never fires: {exc}") from exc
    return schedule
