"""The nightly plan: what is due, spread over the window, never more than a night's share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broker.credentials import Credential, Status, TokenVersion, format_instant
from broker.pacing import WindowLimiter
from broker.rotation import (
    RetryPolicy,
    RotationResult,
    RotationSummary,
    nightly_share,
    plan,
    spread_delay,
)
from broker.settings import Settings

NOW = datetime(2030, 6, 1, 1, 0, tzinfo=UTC)
SETTINGS = Settings(vault_url="https://v.example", rotate_after_days=10, warn_days=30,
                    rotate_window_hours=4, token_lifetime_days=90)


def credential(cid: str, age_days: float, *, status: Status = Status.ACTIVE,
               enabled: bool = True, lifetime_days: float = 90) -> Credential:
    obtained = NOW - timedelta(days=age_days)
    latest = TokenVersion(
        version=None, secret_id=f"https://v.example/secrets/rt-{cid}", created_on=obtained,
        not_before=obtained, expires_on=obtained + timedelta(days=lifetime_days),
        enabled=enabled,
        tags={"credential": cid, "status": status.value, "obtained_at": format_instant(obtained)},
    )
    return Credential.from_latest(cid, latest, latest.secret_id)


def test_only_tokens_older_than_the_rotation_age_are_due():
    creds = [credential(f"c{i}", age) for i, age in enumerate([1, 9.9, 10, 25])]
    creds += [credential(f"fresh{i}", 0) for i in range(16)]  # a share of 2 a night
    due = plan(creds, NOW, SETTINGS)
    assert sorted(d.credential_id for d in due) == ["c2", "c3"]
    assert {d.reason for d in due} == {"age"}


def test_tokens_near_expiry_are_due_for_that_reason():
    due = plan([credential("old", 65)] + [credential(f"n{i}", 0) for i in range(20)], NOW,
               SETTINGS)
    assert [(d.credential_id, d.reason) for d in due] == [("old", "expiry")]


def test_credentials_waiting_for_a_human_are_not_planned():
    creds = [
        credential("pending", 30, status=Status.PENDING_CONSENT, enabled=False),
        credential("dead", 30, status=Status.NEEDS_CONSENT),
        credential("disabled", 30, enabled=False),
        credential("broken", 30, status=Status.ERROR),
    ]
    assert [d.credential_id for d in plan(creds, NOW, SETTINGS)] == ["broken"]


def test_one_night_carries_no_more_than_its_share_oldest_first():
    # 100 credentials all imported together 12 days ago: 10 a night, not 100 at once
    creds = [credential(f"c{i:03}", 12 + i / 1000) for i in range(100)]
    due = plan(creds, NOW, SETTINGS)
    assert len(due) == nightly_share(100, 10) == 10
    assert [d.credential_id for d in due] == [f"c{i:03}" for i in range(99, 89, -1)]


def test_near_expiry_is_never_postponed_by_the_share():
    creds = [credential(f"x{i}", 70) for i in range(5)] + [credential(f"a{i}", 12)
                                                          for i in range(15)]
    due = plan(creds, NOW, SETTINGS)
    assert {d.credential_id for d in due if d.reason == "expiry"} == {f"x{i}" for i in range(5)}
    assert len(due) == 5  # the share of 20 credentials is 2, and expiry ones already exceed it


def test_the_spread_is_deterministic_and_within_the_window():
    creds = [credential(f"c{i}", 11) for i in range(50)]
    first = {d.credential_id: d.delay_s for d in plan(creds, NOW, SETTINGS)}
    again = {d.credential_id: d.delay_s for d in plan(list(reversed(creds)), NOW, SETTINGS)}
    assert first == again
    assert all(0 <= d < 4 * 3600 for d in first.values())
    assert len(set(first.values())) == len(first)  # actually spread out
    assert spread_delay("c1", 0) == 0


def test_the_share_is_at_least_one():
    assert nightly_share(0, 10) == 1
    assert nightly_share(3, 10) == 1
    assert nightly_share(21, 10) == 3


@pytest.mark.parametrize("attempt,retry_after,low,high", [
    (0, None, 0.5, 1.0),
    (1, None, 1.0, 2.0),
    (10, None, 5.0, 10.0),
    (0, 7.0, 7.0, 7.0),
])
def test_backoff_grows_with_jitter_and_honours_retry_after(attempt, retry_after, low, high):
    delay = RetryPolicy(base=1.0, cap=10.0).delay(attempt, retry_after)
    assert low <= delay <= high


def test_summary_counts_outcomes():
    results = [RotationResult("a", o, None, None, "") for o in
               ("rotated", "rotated", "skipped", "needs-consent", "error", "deferred")]
    summary = RotationSummary.of(results)
    assert (summary.rotated, summary.skipped, summary.needs_consent, summary.errors,
            summary.deferred) == (2, 1, 1, 1, 1)


def test_the_limiter_never_lets_more_than_the_limit_into_any_window():
    clock = [0.0]
    limiter = WindowLimiter(3, 10.0, clock=lambda: clock[0],
                            sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    taken = []
    for i in range(10):
        limiter.take()
        taken.append(clock[0])
        clock[0] += 0.5 * (i % 3)  # callers arrive unevenly
    for start in taken:
        assert sum(1 for t in taken if start <= t < start + 10.0) <= 3
    assert taken[:3] == [0.0, 0.0, 0.5]  # an empty window admits at once
    assert taken[3] == pytest.approx(10.0)  # the fourth waits for the first to leave


def test_the_limiter_admits_the_limit_per_window_at_full_speed():
    clock = [0.0]
    limiter = WindowLimiter(30, 10.0, clock=lambda: clock[0],
                            sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    for _ in range(300):
        limiter.take()
    assert clock[0] == pytest.approx(90.0)  # 300 creates: 10 windows of 30, the first at t=0
