"""The facade's short-lived listing: reused, refreshed once at a time, dropped by writes."""

from __future__ import annotations

import threading
import time

from broker.service import _Listing


class SlowVault:
    """Stands in for the vault's listing call: counts calls, can be held mid-call."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def list_credentials(self) -> list:
        self.calls += 1
        listing = [f"listing-{self.calls}"]
        self.release.wait(5)
        return listing


def test_a_listing_is_reused_until_max_age():
    vault = SlowVault()
    listing = _Listing(vault.list_credentials)
    first = listing.get(60)
    assert listing.get(60) is first and vault.calls == 1
    assert listing.get(0) == ["listing-2"]  # max_age 0: always fresh


def test_callers_get_the_previous_listing_while_one_refreshes():
    vault = SlowVault()
    listing = _Listing(vault.list_credentials)
    listing.get(0.01)
    time.sleep(0.02)
    vault.release.clear()
    refresher = threading.Thread(target=listing.get, args=(0.01,))
    refresher.start()
    while vault.calls < 2:
        time.sleep(0.001)
    started = time.monotonic()
    assert listing.get(0.01) == ["listing-1"]  # stale, at once
    assert time.monotonic() - started < 0.5
    vault.release.set()
    refresher.join()
    assert listing.get(60) == ["listing-2"] and vault.calls == 2


def test_a_write_drops_the_listing_and_a_refresh_that_raced_it_is_not_kept():
    vault = SlowVault()
    listing = _Listing(vault.list_credentials)
    listing.get(60)
    vault.release.clear()
    listing.invalidate()
    racing = threading.Thread(target=listing.get, args=(60,))
    racing.start()
    while vault.calls < 2:
        time.sleep(0.001)
    listing.invalidate()  # a write lands while the listing is in flight
    vault.release.set()
    racing.join()
    assert listing.get(60) == ["listing-3"]  # the raced listing was not cached
