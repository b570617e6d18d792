"""Rotation against devstack through MSAL and the Key Vault SDK: the next version is written
under the lease, never over a newer one, and failures leave the stored token in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.credentials import Source, Status
from broker.errors import CredentialNotFound
from broker.rotation import RetryPolicy
from devstack import seed
from tests.support.broker import (
    REDIRECT_URI,
    consented_credential,
    make_broker,
    sign_in_and_finish,
    spec,
)
from tests.support.browserless import auth_response, complete_sign_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def token_versions(broker, credential_id):
    return [v for v in broker.versions(credential_id) if not v.is_placeholder]


# -- the ordinary path ---------------------------------------------------------------------------


def test_rotation_writes_the_next_version_and_keeps_the_old_one_valid(broker):
    credential = consented_credential(broker)
    consent_version = credential.latest
    before = datetime.now(UTC)

    result = broker.rotate(credential.id)

    assert result.outcome == "rotated"
    assert result.previous_version == consent_version.version
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == result.version
    assert latest.source is Source.ROTATION and latest.status is Status.ACTIVE
    assert latest.enabled
    # who consented, with MFA, and their roles travel with the token
    assert latest.consented_by == consent_version.consented_by == seed.PARTNER_ADMIN_UPN
    assert latest.mfa and latest.roles == consent_version.roles
    assert before - timedelta(seconds=2) <= latest.not_before <= datetime.now(UTC)
    assert latest.expires_on - latest.not_before == timedelta(days=90)
    # the consented version is still there, enabled, and Entra still honours its token
    old = next(v for v in broker.versions(credential.id) if v.version == consent_version.version)
    assert old.enabled
    old_token, _ = broker.vault.read_token(credential.id, consent_version.version)
    assert broker.identity.redeem(credential, old_token).refresh_token


def test_own_app_credentials_rotate_with_the_partners_app(broker):
    credential = consented_credential(broker, own_app=True)
    assert credential.client_id == seed.PARTNER_APP_ID
    result = broker.rotate(credential.id)
    assert result.outcome == "rotated"
    assert broker.vault.latest_version(credential.id).tags["client_id"] == seed.PARTNER_APP_ID


def test_a_credential_never_consented_needs_consent_without_a_redeem(broker):
    added = broker.add_credential(spec())
    result = broker.rotate(added.id)
    assert result.outcome == "needs-consent"
    assert len(broker.versions(added.id)) == 1
    assert broker.notifier.events == []  # nothing new to tell: it is pending by design


def test_a_stale_expected_version_is_skipped(broker):
    credential = consented_credential(broker)
    first = broker.rotate(credential.id)
    again = broker.rotate(credential.id, expected_version=credential.latest.version)
    assert again.outcome == "skipped"
    assert broker.vault.latest_version(credential.id).version == first.version


def test_an_unknown_credential_is_an_error_not_a_crash(broker):
    with pytest.raises(CredentialNotFound):
        broker.rotate("no-such-credential-here")
    summary = broker.rotate_many(["no-such-credential-here"])
    assert summary.errors == 1


# -- one writer at a time ------------------------------------------------------------------------


@pytest.fixture(params=["file", "blob"])
def leased_broker(request, devstack, tmp_path):
    if request.param == "blob":
        return make_broker(devstack, tmp_path, storage=request.getfixturevalue("azurite"),
                           lease_seconds=15)
    return make_broker(devstack, tmp_path)


def test_two_rotations_at_once_make_exactly_one_new_version(leased_broker):
    broker = leased_broker
    credential = consented_credential(broker)
    broker.rotator.after_redeem = lambda _: time.sleep(0.5)  # hold the lease a while
    start = threading.Barrier(2)
    results = []

    def rotate():
        start.wait()
        results.append(broker.rotate(credential.id))

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(r.outcome for r in results) == ["rotated", "skipped"]
    assert len(token_versions(broker, credential.id)) == 2


def test_a_waiting_rotation_sees_the_newer_version_and_skips(broker):
    credential = consented_credential(broker)
    broker.rotator.after_redeem = lambda _: time.sleep(0.5)
    results = []

    def rotate():
        results.append(broker.rotate(credential.id, expected_version=credential.latest.version,
                                     wait=10))

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(r.outcome for r in results) == ["rotated", "skipped"]
    assert len(token_versions(broker, credential.id)) == 2


ROTATOR = """
import dataclasses, json, os, sys, time
from pathlib import Path
from tests.support.broker import make_broker
tmp, credential_id, role, storage, expected = sys.argv[1:6]
broker = make_broker(os.environ, Path(tmp), storage=storage or None, lease_seconds=15)
if role == "race":
    here = Path(tmp) / f"ready-{os.getpid()}"
    here.write_text("")
    while len(list(Path(tmp).glob("ready-*"))) < 2:
        time.sleep(0.01)
    broker.rotator.after_redeem = lambda _: time.sleep(0.5)
elif role == "crash":
    def hang(_):
        (Path(tmp) / "redeemed").write_text("")
        time.sleep(60)
    broker.rotator.after_redeem = hang
result = broker.rotate(credential_id, expected_version=expected or None,
                       wait=10 if expected else 0)
print(json.dumps(dataclasses.asdict(result)))
"""


def rotator_process(tmp_path, credential_id, role, *, storage="", expected=""):
    return subprocess.Popen(
        [sys.executable, "-c", ROTATOR, str(tmp_path), credential_id, role, storage, expected],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("leases", ["file", "blob"])
@pytest.mark.parametrize("waiting", [False, True], ids=["non-blocking", "waiting"])
def test_two_rotator_processes_make_exactly_one_new_version(devstack, tmp_path, leases,
                                                            waiting, request):
    storage = request.getfixturevalue("azurite") if leases == "blob" else ""
    broker = make_broker(devstack, tmp_path)
    credential = consented_credential(broker)
    expected = credential.latest.version if waiting else ""
    processes = [rotator_process(tmp_path, credential.id, "race", storage=storage,
                                 expected=expected) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    outcomes = sorted(json.loads(out)["outcome"] for out, _ in outputs)
    assert outcomes == ["rotated", "skipped"]
    assert len(token_versions(broker, credential.id)) == 2


def test_a_rotator_killed_between_redeem_and_write_loses_nothing(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path)
    credential = consented_credential(broker)
    process = rotator_process(tmp_path, credential.id, "crash")
    deadline = time.monotonic() + 30
    while not (tmp_path / "redeemed").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.kill()  # SIGKILL: no cleanup, no finally blocks
    process.communicate(timeout=10)

    # the redeemed token was never written; the stored one is untouched and still works
    assert [v.version for v in token_versions(broker, credential.id)] == \
        [credential.latest.version]
    result = broker.rotate(credential.id, wait=5)  # the dead process's lock is gone
    assert result.outcome == "rotated"
    assert broker.rotate(credential.id).outcome == "rotated"


def test_a_consent_arriving_during_a_rotation_wins(broker):
    credential = consented_credential(broker)
    start = broker.begin_consent(credential.id, REDIRECT_URI)
    params = auth_response(complete_sign_in(start.auth_url, seed.PARTNER_ADMIN_UPN))
    consent = {}

    def finish():
        consent["result"] = broker.finish_consent(start.flow, params)

    def consent_while_rotating(_):
        # the admin's callback lands while this rotation holds the lease, between redeem and
        # write: it must wait for the lease, then land on top
        waiter = threading.Thread(target=finish)
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive(), "the consent did not wait for the rotation's lease"
        consent["thread"] = waiter

    broker.rotator.after_redeem = consent_while_rotating
    rotation = broker.rotate(credential.id)
    consent["thread"].join(30)

    assert rotation.outcome == "rotated"
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == consent["result"].version
    assert latest.source is Source.CONSENT
    versions = [v.version for v in token_versions(broker, credential.id)]
    assert versions[:2] == [consent["result"].version, rotation.version]


def test_an_expired_client_secret_is_an_error_that_keeps_the_token(broker):
    credential = consented_credential(broker, own_app=True)
    # the secret the broker holds runs out in Entra ID (an edit would refuse an expired one)
    broker.vault.write_client_secret(credential.id, seed.PARTNER_APP_EXPIRED_SECRET,
                                     datetime(2099, 12, 31, tzinfo=UTC))

    result = broker.rotate(credential.id)

    assert result.outcome == "error"
    assert "AADSTS7000222" in result.message
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == credential.latest.version and latest.enabled
    assert latest.status is Status.ERROR
    assert latest.reason.code == "AADSTS7000222" and latest.reason.by == "rotation"
    [event] = broker.notifier.for_credential(credential.id)
    assert event.kind == "error" and "client secret" in event.action
    assert "AADSTS7000222" in event.message and "has expired" in event.message
    # the operator puts in the current secret: it is proven with the same token, then stored
    edited = broker.edit(credential.id, spec(credential.id, own_app=True))
    assert edited.verified == "verified"
    assert edited.credential.stored_status is Status.ACTIVE
    assert edited.credential.stored_reason is None



# -- against a devstack of our own: revocation, the clock, faults ------------------------------


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    from tests.support.devstack import running_devstack

    with running_devstack(tmp_path_factory.mktemp("rotation-devstack")) as stack:
        yield stack


@pytest.fixture
def stack(own_stack, devstack):
    """The module's own devstack, reset, with its env loaded for this test only."""
    from tests.support.devstack import environment

    own_stack.reset()
    with environment(own_stack.env):
        yield own_stack


@pytest.fixture
def own_broker(stack, tmp_path):
    return make_broker(stack, tmp_path)


def test_a_revoked_grant_needs_consent_notifies_with_an_invite_and_keeps_the_token(stack,
                                                                                   own_broker):
    broker = own_broker
    credential = consented_credential(broker)
    sent = broker.create_invite(credential.id)  # the operator has already sent a link
    stack.revoke(seed.PARTNER_ADMIN_UPN)

    result = broker.rotate(credential.id)

    assert result.outcome == "needs-consent"
    assert "AADSTS50173" in result.message
    latest = broker.vault.latest_version(credential.id)
    assert latest.version == credential.latest.version and latest.enabled
    assert latest.status is Status.NEEDS_CONSENT
    reason = broker.get_credential(credential.id).reason(datetime.now(UTC))
    assert (reason.code, reason.by) == ("AADSTS50173", "rotation")
    assert "revoked" in reason.meaning and "consent again" in reason.action
    [event] = broker.notifier.for_credential(credential.id)
    assert event.kind == "needs-consent" and event.invite_url
    assert "AADSTS50173" in event.message and "found by rotation on" in event.message
    assert event.invite_url == sent.url  # the link already sent stays the one that works
    assert broker.open_invite(event.invite_url.rsplit("/", 1)[1]).id == credential.id
    assert broker.due(datetime.now(UTC) + timedelta(days=30)) == []  # nightly runs leave it be
    # the admin follows the link and consents again: active, rotating
    sign_in_and_finish(broker, credential.id, invite_token=event.invite_url.rsplit("/", 1)[1])
    assert broker.get_credential(credential.id).stored_status is Status.ACTIVE
    assert broker.rotate(credential.id).outcome == "rotated"


def test_ninety_days_without_use_needs_consent(stack, own_broker):
    credential = consented_credential(own_broker)
    stack.advance_days(91)
    result = own_broker.rotate(credential.id)
    assert result.outcome == "needs-consent"
    assert "AADSTS700082" in result.message
    assert own_broker.notifier.kinds(credential.id) == ["needs-consent"]


def test_entra_outage_is_deferred_to_the_next_run_and_nothing_is_lost(stack, own_broker):
    credentials = [consented_credential(own_broker) for _ in range(3)]
    stack.faults("entra", 503, 1.0)
    summary = own_broker.rotate_many([c.id for c in credentials])
    # Entra asks for 5 s; more than this policy waits, so each is left for the next run
    assert summary.deferred == 3
    for credential in credentials:
        assert [v.version for v in token_versions(own_broker, credential.id)] == \
            [credential.latest.version]
        assert own_broker.get_credential(credential.id).stored_status is Status.ACTIVE
    stack.faults("entra", 503, 0)
    assert own_broker.rotate_many([c.id for c in credentials]).rotated == 3


def test_entra_retry_after_is_honoured_before_retrying(stack, own_broker):
    credential = consented_credential(own_broker)
    own_broker.rotator.retry = RetryPolicy(tries=3, base=0.05, cap=0.2, max_wait=10)
    waits = []

    def sleep(seconds):  # the clock is the seam: record the wait, and let the outage end
        waits.append(seconds)
        stack.faults("entra", 429, 0)

    own_broker.rotator.sleep = sleep
    stack.faults("entra", 429, 1.0)
    result = own_broker.rotate(credential.id)
    assert result.outcome == "rotated"
    assert waits == [5.0]  # Entra's Retry-After, longer than the backoff


def test_entra_faults_at_a_rate_are_retried_or_deferred_never_lost(stack, own_broker):
    credentials = [consented_credential(own_broker) for _ in range(4)]
    stack.faults("entra", 503, 0.5)
    own_broker.rotator.retry = RetryPolicy(tries=3, base=0.01, cap=0.05, max_wait=10)
    own_broker.rotator.sleep = lambda _: None  # Retry-After is 5 s; not worth the wall time
    summary = own_broker.rotate_many([c.id for c in credentials])
    assert summary.rotated + summary.deferred == 4
    stack.faults("entra", 503, 0)
    left = [r.credential_id for r in summary.results if r.outcome == "deferred"]
    assert own_broker.rotate_many(left).rotated == len(left)
    for credential in credentials:  # every latest token is a live one
        assert own_broker.rotate(credential.id).outcome == "rotated"


@pytest.mark.parametrize("status", [503, 429])
def test_key_vault_bursts_are_retried_or_deferred_never_lost(stack, own_broker, status):
    credentials = [consented_credential(own_broker) for _ in range(3)]
    stack.faults("vault", status, 0.3)
    summary = own_broker.rotate_many([c.id for c in credentials])
    stack.faults("vault", status, 0)
    assert summary.errors == 0 and summary.needs_consent == 0
    assert summary.rotated + summary.deferred == 3
    assert stack.state()["faults_injected"]["vault"] > 0
    for credential in credentials:  # nothing lost: every latest version still redeems
        assert own_broker.rotate(credential.id).outcome == "rotated"
        assert own_broker.get_credential(credential.id).stored_status is Status.ACTIVE


def test_rotate_due_takes_tonights_share_oldest_first_and_reports_progress(stack, tmp_path):
    broker = make_broker(stack, tmp_path, rotate_after_days=2)
    consented = [consented_credential(broker) for _ in range(3)]
    pending = broker.add_credential(spec())
    assert broker.due() == []
    later = datetime.now(UTC) + timedelta(days=3)
    due = broker.due(later)
    # three due, but a night's share of three credentials rotated every two days is two
    assert [d.credential_id for d in due] == [c.id for c in consented[:2]]
    assert all(d.reason == "age" and 0 <= d.delay_s < 4 * 3600 for d in due)
    seen = []
    summary = broker.rotate_due(later, progress=seen.append)
    assert summary.rotated == 2
    assert sorted(r.credential_id for r in seen) == sorted(c.id for c in consented[:2])
    assert pending.id not in {r.credential_id for r in seen}
