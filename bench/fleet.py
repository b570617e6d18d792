"""A fleet: 50,000 credentials on one vault, with realistic histories, through the due-scan and
a validation pass.

Seeding 50,000 credentials through the API would take most of an hour at the vault's create
limit, so the bench seeds devstack's own stores directly (an emulator fixture, not product
code): one consent through the real API gives a valid refresh token; its Entra record is
copied under 50,000 fresh token strings, and each credential gets a history of versions (1 to
19 of them, every 1,000th credential 365: a year of nightly validations as the broker used to
write them), its current one obtained 0 to 11 days ago, so that about a sixth is due by age
and the nightly share decides the rest. Then devstack restarts with `--vault-throttle` and
network delay, and the bench runs, against a real queue in Azurite:

- the due-scan (`jobs.enqueue_due`): wall time, vault requests (the listing's pages) and sends;
- the validation timer (`jobs.enqueue_validations`): the same, one message per credential;
- a validation pass: `--validate` of those messages drained by worker threads through
  `jobs.handle_message` (all of them by default), reporting versions written (must be 0),
  requests per validation by endpoint, and the rate; the full pass's time at that rate.

    python -m bench.fleet --credentials 50000 [--validate 50000] [--threads 24]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import devstack, report
from bench.rotation import drain, outcomes, per_item, server_counts, vault_stats

DAY = 86400.0


def history(i: int) -> int:
    """Versions of credential i: mostly 1-19, every 1,000th a year of daily validations."""
    return 365 if i % 1000 == 999 else 1 + (i % 19)


def seed_stores(state: Path, origin_token: str, count: int, prefix: str) -> int:
    """Copy the origin's Entra record under `count` new tokens and write each credential's
    versions straight into the vault's store; returns the versions written."""
    import secrets

    from broker.credentials import Credential, Source, Status
    from broker.vault import PLACEHOLDER_VALUE, RT_CONTENT_TYPE, token_tags
    from devstack import seed as devseed
    from devstack.entra.core import _opaque
    from devstack.entra.store import Store as EntraStore
    from devstack.keyvault.store import Store as VaultStore
    from devstack.keyvault.store import Version, new_version_id

    entra = EntraStore(state)
    record = entra.refresh_token(origin_token)
    vault = VaultStore(state, time.time)
    now = time.time()
    written = 0
    entra._db.execute("BEGIN")
    with vault._transaction() as db:
        for i in range(count):
            token = _opaque("0.A", 48, 640)
            entra.add_refresh_token(
                token, tenant_id=record.tenant_id, client_id=record.client_id,
                user_oid=record.user_oid, upn=record.upn, resource=record.resource,
                scopes=record.scopes, mfa=record.mfa, auth_time=record.auth_time, now=now)
            cid = f"{prefix}-{i:05d}"
            name = f"rt-{cid}"
            db.execute("INSERT INTO secrets (name) VALUES (?)", (name,))
            credential = Credential(
                id=cid, environment="production", product="Billing", marketplace="US",
                tenant_id=devseed.PARTNER_TENANT_ID, client_id=None,
                stored_status=Status.ACTIVE, secret_id="", latest=None)
            placeholder = {"credential": cid, "status": "pending-consent", "source": "consent"}
            versions = history(i)
            newest = now - (i % 12) * DAY - (i % 7) * 3600
            created = newest - versions * DAY
            VaultStore._insert(db, Version(name, new_version_id(), PLACEHOLDER_VALUE,
                                           RT_CONTENT_TYPE, False, None, None, int(created),
                                           int(created), placeholder))
            for v in range(versions):
                obtained = newest - (versions - 1 - v) * DAY
                value = token if v == versions - 1 else "0.A" + secrets.token_urlsafe(48)
                tags = token_tags(credential, source=Source.ROTATION if v else Source.CONSENT,
                                  obtained_at=datetime.fromtimestamp(obtained, UTC),
                                  consented_by=record.upn, mfa=True)
                VaultStore._insert(db, Version(name, new_version_id(), value, RT_CONTENT_TYPE,
                                               True, int(obtained), int(obtained + 90 * DAY),
                                               int(obtained), int(obtained), tags))
                written += 1
    entra._db.execute("COMMIT")
    entra.close()
    vault.close()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--credentials", type=int, default=50_000)
    parser.add_argument("--validate", type=int, default=None,
                        help="validations to drain (all credentials by default)")
    parser.add_argument("--threads", type=int, default=24, help="validation worker threads")
    parser.add_argument("--latency", default="vault=10,entra=100")
    args = parser.parse_args(argv)

    from broker import jobs
    from broker.queue import Queues, RotationMessage
    from broker.rotation import RetryPolicy
    from broker.runtime.queues import MemoryQueue, queues_from_settings
    from tests.support.azurite import running_azurite
    from tests.support.broker import RecordingNotifier, consented_credential, make_broker

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        state = tmp / "devstack"
        started = time.monotonic()
        with devstack(state_dir=state) as env:
            seeder = make_broker(env, tmp, vault_creates_per_10s=100_000)
            origin = consented_credential(seeder, credential_id="fleet-origin")
            token, _ = seeder.vault.read_token(origin.id)
        versions = seed_stores(state, token, args.credentials, "fleet")
        seed_s = time.monotonic() - started

        with devstack("--vault-throttle", "--latency", args.latency, state_dir=state) as env, \
                running_azurite(tmp / "azurite") as storage:
            broker = make_broker(env, tmp, notifier=RecordingNotifier(), retry=RetryPolicy(),
                                 rotate_window_hours=0, rotate_concurrency=args.threads,
                                 storage=storage)
            queues = queues_from_settings(broker.settings)
            queues.rotations.clear()

            before = server_counts(env)
            t0 = time.monotonic()
            due = jobs.enqueue_due(broker, queues.rotations)
            scan_s = time.monotonic() - t0
            after_scan = server_counts(env)
            queues.rotations.clear()

            t0 = time.monotonic()
            sent = jobs.enqueue_validations(broker, queues.rotations)
            enqueue_s = time.monotonic() - t0
            after_enqueue = server_counts(env)

            # the pass drains an in-process queue of `wanted` of those messages: Azurite's
            # queue scans every message on each receive, which with 50,000 queued measures
            # the emulator, not the broker (Azure Storage does not)
            wanted = min(sent, args.validate if args.validate is not None else sent)
            drained = Queues(MemoryQueue("rotations"), MemoryQueue("rotations-poison"))
            for credential_id in [f"fleet-{i:05d}" for i in range(args.credentials)][:wanted]:
                drained.rotations.send(RotationMessage(
                    credential_id, None, datetime.now(UTC), job="validate").dumps())
            creates_before = vault_stats(env)["create_attempts"]
            results, window_s = _drain_some(broker, drained, args.threads, wanted)
            after_validation = server_counts(env)
            creates = vault_stats(env)["create_attempts"] - creates_before
            validated = sum(1 for r in results if r is not None)
            ok = sum(1 for r in results if r is not None and r.ok)

    pages = -(-(args.credentials + 1) // 25)
    rate = validated / window_s if window_s else 0.0
    report(
        "fleet",
        credentials=args.credentials,
        versions=versions,
        due_scan={"wall_s": round(scan_s, 2), "due": len(due), "listing_pages": pages,
                  "vault_requests": per_item(before, after_scan, 1), "queue_sends": len(due)},
        validation_timer={"wall_s": round(enqueue_s, 2), "messages": sent,
                          "vault_requests": per_item(after_scan, after_enqueue, 1)},
        validation_pass={"validated": validated, "ok": ok, "versions_written": creates,
                         "wall_s": round(window_s, 2), "per_s": round(rate, 1),
                         "full_pass_s": round(sent / rate, 0) if rate else None,
                         "requests_per_validation": per_item(after_enqueue, after_validation,
                                                             validated),
                         "outcomes": dict(outcomes(results))},
        worker_threads=args.threads,
        latency=args.latency,
        seed_s=round(seed_s, 1),
    )


def _drain_some(broker, queues, threads: int, wanted: int):
    """Drain until `wanted` messages were handled (the rest stay queued), timing the window."""
    from broker.queue import Queues

    class Limited:
        """The rotations queue, handing out no more than `wanted` messages in all."""

        def __init__(self, inner) -> None:
            self.inner, self.left, self.name = inner, wanted, inner.name

        def receive(self, max_messages: int = 1, **kwargs):
            if self.left <= 0:
                return []
            got = self.inner.receive(min(max_messages, self.left), **kwargs)
            self.left -= len(got)
            return got

        def count(self) -> int:
            return self.inner.count() if self.left > 0 else 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

    limited = Queues(Limited(queues.rotations), queues.poison)
    return drain(broker, limited, threads, idle_s=2.0,
                 timeout_s=max(120.0, wanted / 2))


if __name__ == "__main__":
    main()
