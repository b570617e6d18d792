"""A rotator process for tests to SIGKILL: a real Broker rotating credentials in a loop.

    python -m tests.support.chaos WORKDIR --ids a,b,c --attempts N --seed S
                                  [--storage CONN] [--hang-at K]

It reads the devstack's settings from its environment (what `make_broker` does with the
parent's `os.environ`), uses blob leases of 15 s on `--storage` (Azurite) or file leases under
WORKDIR, and rotates credentials picked at random (seeded) until N rotations were attempted.
With `--hang-at K` the rotation that makes the K-th redeem stops between redeem and write (the
`Rotator.after_redeem` seam) and waits there to be killed; a rotation skipped because another
holder's lease is still live redeems nothing and does not count.

It tells the parent what it does by appending lines to WORKDIR/progress, written before the
step they name so that a kill can never hide a step that happened:
`ready <pid>`, `start <n> <id>`, `redeemed <id>`, `done <id> <outcome> <version or ->`.
Its log goes, unredacted, to stderr: the parent scans it for secrets. Nothing here prints a
token.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from pathlib import Path

PROGRESS = "progress"
LEASE_SECONDS = 15


class Progress:
    def __init__(self, workdir: Path) -> None:
        self._file = open(workdir / PROGRESS, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def say(self, *words: object) -> None:
        self._file.write(" ".join(str(w) for w in words) + "\n")
        self._file.flush()


def read_progress(workdir: Path) -> list[list[str]]:
    """The lines written so far by every rotator that ran in `workdir`, split into words."""
    path = workdir / PROGRESS
    if not path.exists():
        return []
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line]


def _log_to_stderr() -> None:
    """Raw records, as the integration scan sees them: our code at DEBUG, libraries at INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("broker").setLevel(logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--attempts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="")
    parser.add_argument("--hang-at", type=int, default=0)
    args = parser.parse_args(argv)

    _log_to_stderr()
    from tests.support.broker import make_broker

    ids = args.ids.split(",")
    rng = random.Random(args.seed)
    progress = Progress(args.workdir)
    broker = make_broker(os.environ, args.workdir, storage=args.storage or None,
                         lease_seconds=LEASE_SECONDS)
    redeems = 0

    def after_redeem(credential_id: str) -> None:
        nonlocal redeems
        redeems += 1
        progress.say("redeemed", credential_id)
        if redeems == args.hang_at:
            time.sleep(600)  # the parent kills us here, between redeem and write

    broker.rotator.after_redeem = after_redeem
    progress.say("ready", os.getpid())
    for n in range(1, args.attempts + 1):
        credential_id = rng.choice(ids)
        progress.say("start", n, credential_id)
        result = broker.rotate(credential_id)
        progress.say("done", credential_id, result.outcome, result.version or "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
