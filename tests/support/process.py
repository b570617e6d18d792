"""One way to run a server as a child process for tests and benchmarks (devstack, Azurite, the
consent site under gunicorn): output to a log file, wait until it is ready, stop it for sure.

    with server_process(argv, log=path, ready=lambda: port_open(port), what="Azurite") as proc:
        ...
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

STOP_GRACE_S = 10.0


@contextlib.contextmanager
def server_process(argv: Sequence[str], *, log: Path, ready: Callable[[], bool], what: str,
                   timeout: float = 30.0, **popen) -> Iterator[subprocess.Popen]:
    """Start `argv` (stdout and stderr appended to `log`), wait until `ready()` is true, yield
    the process, and stop it on the way out. A process that exits or is not ready within
    `timeout` seconds is a RuntimeError carrying the end of its log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as sink:
        process = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, **popen)
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    state = "exited" if process.poll() is not None else "is not ready"
                    raise RuntimeError(f"{what} {state}:\n{log.read_text()[-4000:]}")
                time.sleep(0.05)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within the grace period."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False
