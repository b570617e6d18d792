"""FakeBroker stands in for Broker in the web unit tests; this holds it to Broker's surface and
to the rules the pages show (a fake that drifts makes those tests prove nothing)."""

from __future__ import annotations

import inspect
from datetime import UTC, date, datetime, timedelta

from broker.credentials import CredentialSpec, secret_expiry_instant
from broker.service import Broker
from tests.unit.web_fakes import FakeBroker

# what only the tests use to arrange and inspect the fake
TEST_ONLY = {"seed", "calls", "fail", "versions_by_id", "secret_expiry", "client_secrets",
             "open_invites", "validation_ok", "rotation_outcome", "notifier", "settings"}


def _public(cls) -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and name not in TEST_ONLY}


def test_every_method_the_fake_offers_is_brokers_with_the_same_parameters():
    fake, real = _public(FakeBroker), _public(Broker)
    assert set(fake) <= set(real), f"not on Broker: {sorted(set(fake) - set(real))}"
    for name, member in fake.items():
        if isinstance(member, property):
            assert isinstance(real[name], property), name
            continue
        ours = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        theirs = [(p.name, p.kind) for p in inspect.signature(real[name]).parameters.values()]
        assert ours == theirs, name


def test_the_fake_stores_a_secret_expiry_as_broker_does_at_the_end_of_the_day():
    fake = FakeBroker()
    expires = date.today() + timedelta(days=200)
    fake.add_credential(CredentialSpec(
        id="own", environment="test", product="p", marketplace="US",
        tenant_id="contoso.example", client_id="8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c",
        client_secret="s" * 40, secret_expires_on=expires))
    stored = fake.get_credential("own").secret_expires_on
    assert stored == secret_expiry_instant(expires)
    assert stored == datetime.combine(expires, datetime.max.time(), UTC).replace(microsecond=0)
