"""Two rotation workers and a consent writing the same credentials at once: no stale overwrite.

Each worker is a Broker of its own (as two Function instances are), rotating credentials
picked at random the way queue messages do (expecting the version seen a moment earlier and
waiting for the lease) or the way `broker rotate` does (whatever is latest, no wait), with a
random pause between redeem and write to widen the window. Meanwhile an admin consents again
to each credential through a third Broker (the consent site's); one of those consents arrives
while a worker holds the lease between redeem and write.

Which version each rotation redeemed is recorded as it happens (the workers' reads of the
current version, their redeems and their writes are observed, not changed); the final version
history must then be a single chain:
strictly ordered by `obtained_at`, every rotation written on top of exactly the version it
redeemed, and every consent followed only by rotations descending from it.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass

import pytest

from broker.credentials import Source
from devstack import seed
from tests.support.broker import REDIRECT_URI, consented_credential, make_broker
from tests.support.browserless import auth_response, complete_sign_in

CREDENTIALS = 3
ROUNDS_AFTER_CONSENTS = 4  # rotations each worker makes once every consent has landed
SEED = 7


@dataclass(frozen=True)
class Write:
    credential_id: str
    version: str  # what the rotation wrote
    redeemed: str  # the version whose token it redeemed


class Lineage:
    """Observes a Broker's rotations at the seams they go through: the version Key Vault
    answered as current (`Vault.current`), the token redeemed (`Identity.redeem`: it must be
    that version's), and the version written from it (`Vault.write_version`).

    Nothing is changed, only recorded; a rotation's read, redeem and write happen in one thread,
    so what a thread read last is what its next write was redeemed from.
    """

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self._seen = threading.local()
        self._lock = threading.Lock()

    def watch(self, broker) -> None:
        vault, identity = broker.vault, broker.identity
        current, redeem, write_version = vault.current, identity.redeem, vault.write_version

        def reading(credential_id):
            read = current(credential_id)
            self._seen.read = (credential_id, read.version.version, read.value)
            return read

        def redeeming(credential, refresh_token, *args, **kwargs):
            read_from, version, value = getattr(self._seen, "read", (None, None, None))
            assert read_from == credential.id and value == refresh_token, \
                "a rotation redeemed a token other than the current version it read"
            self._seen.redeemed = (credential.id, version)
            return redeem(credential, refresh_token, *args, **kwargs)

        def writing(credential, token, *, source, **kwargs):
            redeemed_from, redeemed = self._seen.__dict__.pop("redeemed", (None, None))
            written = write_version(credential, token, source=source, **kwargs)
            if source is Source.ROTATION:
                assert redeemed_from == credential.id, "a rotation wrote without redeeming"
                with self._lock:
                    self.writes.append(Write(credential.id, written.version.version, redeemed))
            return written

        vault.current, identity.redeem, vault.write_version = reading, redeeming, writing


def token_versions(broker, credential_id):
    return [v for v in broker.versions(credential_id) if not v.is_placeholder]


@pytest.fixture(params=["file", "blob"])
def lease_settings(request) -> dict:
    if request.param == "blob":
        return {"storage": request.getfixturevalue("azurite"), "lease_seconds": 15}
    return {}


def test_two_rotation_workers_and_a_consent_never_overwrite_a_newer_version(
        devstack, tmp_path, lease_settings):
    site = make_broker(devstack, tmp_path, **lease_settings)
    workers = [make_broker(devstack, tmp_path, **lease_settings) for _ in range(2)]
    lineage = Lineage()
    for worker in workers:
        lineage.watch(worker)
    ids = [consented_credential(site).id for _ in range(CREDENTIALS)]
    forced = ids[0]  # the credential whose consent lands while a rotation holds its lease
    forced_redeemed, consent_waiting = threading.Event(), threading.Event()
    consents_done = threading.Event()
    consents: dict[str, str] = {}
    results, errors = [], []
    lock = threading.Lock()

    def pause_after_redeem(rng: random.Random):
        def hook(credential_id: str) -> None:
            if credential_id == forced and not forced_redeemed.is_set():
                forced_redeemed.set()
                consent_waiting.wait(10)
                time.sleep(0.3)  # still holding the lease while the consent asks for it
            else:
                time.sleep(rng.uniform(0, 0.08))
        return hook

    def work(broker, rng: random.Random) -> None:
        broker.rotator.after_redeem = pause_after_redeem(rng)
        after = 0
        try:
            while after < ROUNDS_AFTER_CONSENTS:
                if consents_done.is_set():
                    after += 1
                credential_id = rng.choice(ids)
                if rng.random() < 0.6:  # a queue message: the version seen when enqueued
                    seen = broker.vault.latest_version(credential_id).version
                    time.sleep(rng.uniform(0, 0.05))
                    result = broker.rotate(credential_id, expected_version=seen, wait=5)
                else:  # `broker rotate <id>`
                    result = broker.rotate(credential_id)
                with lock:
                    results.append(result)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def consent_again() -> None:
        try:
            time.sleep(0.3)  # the workers are under way
            for credential_id in ids:
                start = site.begin_consent(credential_id, REDIRECT_URI)
                params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN))
                if credential_id == forced:
                    assert forced_redeemed.wait(30), "no worker rotated the forced credential"
                    consent_waiting.set()
                consents[credential_id] = site.finish_consent(start.flow, params).version
        except BaseException as exc:
            errors.append(exc)
        finally:
            consents_done.set()

    threads = [threading.Thread(target=work, args=(w, random.Random(SEED + i)))
               for i, w in enumerate(workers)]
    threads.append(threading.Thread(target=consent_again))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert set(consents) == set(ids)

    outcomes = [r.outcome for r in results]
    assert set(outcomes) <= {"rotated", "skipped"}, outcomes
    assert outcomes.count("skipped") > 0, "the workers never collided"
    assert lineage.writes and {w.version for w in lineage.writes} == \
        {r.version for r in results if r.outcome == "rotated"}
    redeemed_by = {w.version: w.redeemed for w in lineage.writes}
    rotated_after_consent = 0

    for credential_id in ids:
        history = list(reversed(token_versions(site, credential_id)))  # oldest first
        order = [v.version for v in history]
        obtained = [v.obtained_at for v in history]
        assert all(a < b for a, b in itertools.pairwise(obtained)), \
            "versions are not strictly ordered by obtained_at"
        # every rotation wrote on top of the very version it redeemed: never a stale one
        for previous, version in itertools.pairwise(history):
            if version.source is Source.ROTATION:
                assert redeemed_by[version.version] == previous.version, (
                    f"{credential_id}: rotation {version.version} redeemed "
                    f"{redeemed_by[version.version]} but was written over {previous.version}")
        # the consent is in the history, and all that follows it descends from it
        consent = consents[credential_id]
        assert consent in order
        after_consent = history[order.index(consent) + 1:]
        assert all(v.source is Source.ROTATION for v in after_consent)
        rotated_after_consent += len(after_consent)
        if credential_id == forced:
            # it waited for the rotation holding the lease, then landed on top of it
            position = order.index(consent)
            assert position > 0 and history[position - 1].source is Source.ROTATION
        # and the final latest version is a live token
        token, latest = site.vault.read_token(credential_id)
        assert latest.version == order[-1]
        credential = site.get_credential(credential_id)
        assert site.identity.redeem(credential, token).refresh_token
    # rotations did happen after the consents: the chains checked above are not empty
    assert rotated_after_consent > 0
