"""What every benchmark shares: a private devstack, machine facts and the JSON report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    """Where the numbers came from, so the README table can say it."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
    }


def report(name: str, **values) -> None:
    """Print the benchmark's one JSON object as the last line of its output."""
    values = {"benchmark": name, **values, "machine": machine()}
    print(json.dumps(values, sort_keys=False), flush=True)


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def devstack(*args: str, state_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """A private devstack process on free ports; yields its env and loads it into os.environ
    (the tests' own helper, so the benchmarks start and stop it as the tests do)."""
    from tests.support.devstack import environment, running_devstack

    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        running = stack.enter_context(running_devstack(state_dir, *args))
        stack.enter_context(environment(running.env))
        yield running.env

