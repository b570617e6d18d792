"""What every benchmark shares: a private devstack, machine facts and the JSON report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
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
    """A private devstack process on free ports; yields its env and loads it into os.environ."""
    from devstack.stack import ENV_FILE, read_env

    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        state_dir.mkdir(parents=True, exist_ok=True)
        env_file = state_dir / ENV_FILE
        env_file.unlink(missing_ok=True)
        log = stack.enter_context(open(state_dir / "devstack.log", "ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up", "--foreground", "--port-base", "0",
             "--state-dir", str(state_dir), *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 30
            while not env_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((state_dir / "devstack.log").read_text())
                time.sleep(0.05)
            env = read_env(env_file)
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                yield env
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
