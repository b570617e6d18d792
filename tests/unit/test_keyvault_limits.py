"""Key Vault's service limits: sliding 10-second windows, separate budgets, refusals not counted."""

from __future__ import annotations

from devstack.keyvault.limits import CREATE_LIMIT, OTHER_LIMIT, Limits, SlidingWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_admits_up_to_the_limit_then_says_how_long_to_wait():
    clock = FakeClock()
    window = SlidingWindow(3, window=10, clock=clock)
    assert [window.admit() for _ in range(3)] == [None, None, None]
    clock.now += 2.5
    assert window.admit() == 8  # the first event leaves the window 7.5 s from now
    clock.now += 7.5
    assert window.admit() is None


def test_refused_events_do_not_count():
    clock = FakeClock()
    window = SlidingWindow(1, window=10, clock=clock)
    assert window.admit() is None
    for _ in range(50):
        clock.now += 0.1
        assert window.admit() is not None
    clock.now = 1010.0
    assert window.admit() is None


def test_creates_and_other_transactions_have_their_own_budgets():
    clock = FakeClock()
    limits = Limits(enabled=True, clock=clock)
    assert all(limits.admit("create") is None for _ in range(CREATE_LIMIT))
    assert limits.admit("create") == 10
    assert all(limits.admit("other") is None for _ in range(OTHER_LIMIT))
    assert limits.admit("other") == 10
    assert limits.stats()["creates"] == CREATE_LIMIT
    limits.reset()
    assert limits.admit("create") is None and limits.stats()["creates"] == 1


def test_disabled_limits_only_count():
    limits = Limits(enabled=False, clock=FakeClock())
    assert all(limits.admit("create") is None for _ in range(CREATE_LIMIT * 2))
    limits.count("requests")
    assert limits.stats() == {"requests": 1, "throttled": 0, "creates": CREATE_LIMIT * 2,
                              "create_attempts": CREATE_LIMIT * 2, "creates_throttled": 0,
                              "peak_create_attempts_10s": CREATE_LIMIT * 2}


def test_create_attempts_are_counted_with_their_peak_in_any_window():
    clock = FakeClock()
    limits = Limits(enabled=True, clock=clock)
    for _ in range(CREATE_LIMIT + 50):  # 50 more than the limit arrive in one window
        limits.admit("create")
    clock.now += 11
    limits.admit("create")
    stats = limits.stats()
    assert stats["create_attempts"] == CREATE_LIMIT + 51
    assert stats["creates_throttled"] == 50
    assert stats["peak_create_attempts_10s"] == CREATE_LIMIT + 50
