"""The site's listing may be a few seconds old, but never misses a write made through it."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.broker import make_broker, spec, unique_id


def test_a_cached_listing_is_reused_within_max_age(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path)
    first = broker.list_credentials(max_age=60)
    # written behind the facade's back (as another process would): not seen until max_age
    hidden = unique_id("hidden")
    broker.vault.create_placeholder(spec(hidden).validated(now=datetime.now(UTC)),
                                    now=datetime.now(UTC))
    assert broker.list_credentials(max_age=60) is first
    assert hidden in {c.id for c in broker.list_credentials()}  # max_age=0: always fresh


def test_a_write_through_the_broker_shows_at_once(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path)
    broker.list_credentials(max_age=60)
    added = broker.add_credential(spec())
    assert added.id in {c.id for c in broker.list_credentials(max_age=60)}
    broker.remove_credential(added.id)
    assert added.id not in {c.id for c in broker.list_credentials(max_age=60)}
