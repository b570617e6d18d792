"""broker.runtime.schedule (its grammar: broker.ncrontab) reads NCRONTAB as the Azure Functions
timer trigger (NCrontab) does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from broker.runtime.schedule import InvalidSchedule, parse_schedule
from broker.settings import Settings

WED = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday


def nexts(expression: str, start: datetime = WED, count: int = 3) -> list[datetime]:
    schedule, out, moment = parse_schedule(expression), [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        out.append(moment)
    return out


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 0 1 * * *", [at(2025, 1, 1, 1), at(2025, 1, 2, 1), at(2025, 1, 3, 1)]),
    ("0 30 5 * * *", [at(2025, 1, 1, 5, 30), at(2025, 1, 2, 5, 30), at(2025, 1, 3, 5, 30)]),
    ("*/1 * * * * *", [at(2025, 1, 1, 0, 0, 1), at(2025, 1, 1, 0, 0, 2), at(2025, 1, 1, 0, 0, 3)]),
    ("0 */5 * * * *", [at(2025, 1, 1, 0, 5), at(2025, 1, 1, 0, 10), at(2025, 1, 1, 0, 15)]),
    ("15,45 * * * * *", [at(2025, 1, 1, 0, 0, 15), at(2025, 1, 1, 0, 0, 45),
                         at(2025, 1, 1, 0, 1, 15)]),
    # NCrontab reads "N/S" as N to the field's maximum in steps of S
    ("5/20 * * * * *", [at(2025, 1, 1, 0, 0, 5), at(2025, 1, 1, 0, 0, 25),
                        at(2025, 1, 1, 0, 0, 45)]),
    ("0 0 9 * * 1-5", [at(2025, 1, 1, 9), at(2025, 1, 2, 9), at(2025, 1, 3, 9)]),
    ("0 0 0 * * 0", [at(2025, 1, 5), at(2025, 1, 12), at(2025, 1, 19)]),
])
def test_next_occurrences_match_the_functions_host(expression, expected):
    assert nexts(expression) == expected


def test_day_of_month_and_day_of_week_must_both_match_as_in_ncrontab():
    # unix cron would fire on every Monday *or* every 1st; NCrontab only on a Monday the 1st
    assert nexts("0 0 0 1 * 1") == [at(2025, 9, 1), at(2025, 12, 1), at(2026, 6, 1)]
    assert nexts("0 0 0 13 * Fri", count=2) == [at(2025, 6, 13), at(2026, 2, 13)]


@pytest.mark.parametrize(("names", "numbers"), [
    ("0 0 9 * Jan-Mar Mon-Fri", "0 0 9 * 1-3 1-5"),
    ("0 0 9 * January Monday", "0 0 9 * 1 1"),
    ("0 0 9 * jun sat", "0 0 9 * 6 6"),
    ("0 0 9 * Ju *", "0 0 9 * 6 *"),  # a prefix picks the first name it starts: June
])
def test_month_and_day_names_are_prefixes_of_english_names(names, numbers):
    assert nexts(names, count=4) == nexts(numbers, count=4)


def test_next_occurrence_is_strictly_after_the_moment():
    schedule = parse_schedule("0 0 1 * * *")
    assert schedule.next_after(at(2025, 1, 1, 1)) == at(2025, 1, 2, 1)
    assert schedule.next_after(at(2025, 1, 1, 0, 59, 59, 999999)) == at(2025, 1, 1, 1)


def test_schedules_are_utc_whatever_the_moment_zone():
    schedule = parse_schedule("0 0 1 * * *")
    paris = datetime(2025, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=1)))  # 00:30 UTC
    assert schedule.next_after(paris) == at(2025, 1, 1, 1)
    assert schedule.next_after(datetime(2025, 1, 1, 0, 30)) == at(2025, 1, 1, 1)  # naive: UTC


def test_leap_day_schedule_waits_for_a_leap_year():
    assert nexts("0 0 0 29 2 *", count=2) == [at(2028, 2, 29), at(2032, 2, 29)]


@pytest.mark.parametrize(("expression", "complaint"), [
    ("0 0 1 * *", "six fields"),  # unix cron: Azure wants the seconds too
    ("0 0 0 1 * * 2025", "six fields"),
    ("", "six fields"),
    ("0 0 25 * * *", "hour 25 is out of range 0-23"),
    ("60 * * * * *", "second 60 is out of range"),
    ("0 0 0 0 * *", "day 0 is out of range"),
    ("0 0 0 * 13 *", "month 13 is out of range"),
    ("0 0 0 * * 7", "day-of-week 7 is out of range 0-6"),  # cron's other Sunday: not NCrontab
    ("0 0 0 L * *", "'L' is not a number (day)"),
    ("H 0 0 * * *", "'H' is not a number (second)"),
    ("0 0 0 * * 1#2", "'1#2' is not a valid day-of-week"),
    ("0 0 0 * * Xyz", "'Xyz' is not a day-of-week name"),
    ("0 0 0 * * 5-1", "runs backwards"),
    ("*/0 * * * * *", "must be at least 1"),
    ("0 0 0 31 2 *", "never fires"),
    ("00:05:00", "six fields"),  # a TimeSpan: only dedicated plans accept it, Flex does not
])
def test_expressions_the_host_would_refuse_are_refused_with_the_reason(expression, complaint):
    with pytest.raises(InvalidSchedule, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(expression)


def test_the_default_schedules_of_the_settings_parse():
    defaults = Settings.__dataclass_fields__
    for name in ("rotate_schedule", "validate_schedule"):
        parse_schedule(defaults[name].default)


def test_whitespace_between_fields_is_free_and_the_expression_is_kept():
    schedule = parse_schedule("  0   0  1 * * *  ")
    assert str(schedule) == "0 0 1 * * *"
    assert schedule.next_after(WED) == at(2025, 1, 1, 1)
