"""`broker dev`: the whole local stack in one terminal, as child processes.

devstack first (its env file says where Key Vault, Entra ID and the identity endpoint are), then
the consent site and the rotation worker with that env, each as its own managed identity (the
roles it has in Azure, not the operator's). Every child gets its own process group
so Ctrl-C reaches only us, and we stop them in reverse order (SIGTERM, then SIGKILL after a
grace period). If one child dies, all are stopped and its last lines are shown.

This module only starts `python -m devstack`, `python -m consent_web` and `broker worker` as
processes: nothing here imports devstack, consent_web or the worker (the import contracts in
pyproject.toml hold it to that).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from broker.settings import default_state_dir

START_TIMEOUT = 30.0
SITE_TIMEOUT = 20.0
STOP_GRACE = 10.0
TAIL_LINES = 40
SITE_PREFIX = "Consent site:"
SIGN_IN_PREFIX = "Operator sign-in (one-time link):"


class Child:
    """One supervised process: output to a log file and a tail kept for error reports."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 echo: threading.Event) -> None:
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.lines: list[str] = []  # every line until the banner is out; then only the tail
        self.echo = echo
        self.changed = threading.Condition()
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_dir.chmod(0o700)
        self.log_path = log_dir / f"{name}.log"
        # the site's log carries one-time sign-in links: readable by this user only
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # a log file from before keeps no wider mode
        self._log: IO[str] = open(fd, "a", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace", bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"dev-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self._log.write(line + "\n")
            self._log.flush()
            with self.changed:
                self.tail.append(line)
                if not self.echo.is_set():
                    self.lines.append(line)
                self.changed.notify_all()
            if self.echo.is_set():
                print(f"[{self.name}] {line}", flush=True)
        with self.changed:
            self.changed.notify_all()

    def find(self, prefix: str) -> str | None:
        with self.changed:
            for line in self.lines:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        return None

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        self._reader.join(timeout=2)
        self._log.close()

    def report(self) -> str:
        with self.changed:
            lines = list(self.tail)
        code = self.process.returncode
        head = f"{self.name} exited with code {code}" if code is not None else f"{self.name}"
        body = "\n".join(f"  {line}" for line in lines) or "  (no output)"
        return f"{head}; its last lines (full log: {self.log_path}):\n{body}"


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stop = threading.Event()
        self.echo = threading.Event()

    def start(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Child:
        child = Child(name, argv, env, log_dir, self.echo)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.children if not c.running), None)

    def wait_for(self, ready, timeout: float) -> Child | None:
        """Until `ready()` or a child dies (returned) or time/stop runs out (TimeoutError)."""
        deadline = time.monotonic() + timeout
        while not ready():
            dead = self.dead()
            if dead is not None:
                return dead
            if self.stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.05)
        return None

    def shutdown(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"broker dev: {child.name} did not stop in {STOP_GRACE:g} s; killing it",
                      file=sys.stderr, flush=True)
                child.kill()
                child.process.wait()
        for child in self.children:
            child.close()


def read_env_file(path: Path) -> dict[str, str]:
    """`export NAME=value` lines (shell-quoted), as devstack writes them."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            values[name] = value
    return values


def _identity(env: dict[str, str], stack_env: dict[str, str], key: str) -> dict[str, str]:
    """Run a child as its own managed identity (`AZURE_CLIENT_ID`), as it runs in Azure: the
    site and the worker get only their roles, not the operator's (unless the caller chose one)."""
    client_id = stack_env.get(f"DEVSTACK_{key}_CLIENT_ID")
    if not client_id or os.environ.get("AZURE_CLIENT_ID"):
        return env
    return {**env, "AZURE_CLIENT_ID": client_id}


def run_dev(args) -> int:
    if not _devstack_here():
        return _fail("devstack runs from a checkout of this repository and is not installed "
                     "with the package: run `broker dev` (or `make run`) in the checkout.")
    state_dir: Path = args.state_dir
    env_file = state_dir / "env"
    log_dir = state_dir / "logs"
    supervisor = Supervisor()
    previous = {sig: signal.signal(sig, lambda *_: supervisor.stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args, supervisor, state_dir, env_file, log_dir)
    except KeyboardInterrupt:
        return 0
    finally:
        print("broker dev: stopping ...", file=sys.stderr, flush=True)
        supervisor.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("broker dev: stopped.", file=sys.stderr, flush=True)


def _run(args, supervisor: Supervisor, state_dir: Path, env_file: Path, log_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    env_file.unlink(missing_ok=True)  # wait for this run's file, not a stale one
    python = sys.executable
    devstack_argv = [python, "-m", "devstack", "up", "--foreground", "--state-dir",
                     str(state_dir)]
    if args.devstack_port_base is not None:
        devstack_argv += ["--port-base", str(args.devstack_port_base)]
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print("broker dev: starting devstack ...", file=sys.stderr, flush=True)
    devstack = supervisor.start("devstack", devstack_argv, base_env, log_dir)
    try:
        dead = supervisor.wait_for(env_file.exists, START_TIMEOUT)
    except TimeoutError:
        return _fail(f"devstack did not write {env_file} within {START_TIMEOUT:g} s.\n"
                     + devstack.report())
    if dead is not None:
        return _fail(dead.report())

    stack_env = read_env_file(env_file)
    public_url = os.environ.get("BROKER_PUBLIC_URL") or f"http://localhost:{args.port}"
    broker_state = Path(os.environ.get("BROKER_STATE_DIR") or default_state_dir()).resolve()
    broker_env = {"BROKER_PUBLIC_URL": public_url, "BROKER_STATE_DIR": str(broker_state)}
    (state_dir / "broker-env").write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in broker_env.items()),
        encoding="utf-8")
    child_env = {**base_env, **stack_env, **broker_env}

    site = supervisor.start("consent_web",
                            [python, "-m", "consent_web", "--port", str(args.port)],
                            _identity(child_env, stack_env, "SITE"), log_dir)
    supervisor.start("worker", [python, "-m", "broker", "worker"],
                     _identity(child_env, stack_env, "ROTATION"), log_dir)

    try:
        dead = supervisor.wait_for(
            lambda: site.find(SITE_PREFIX) is not None
            and (site.find(SIGN_IN_PREFIX) is not None or _no_local_sign_in(site)),
            SITE_TIMEOUT)
    except TimeoutError:
        return _fail(f"the consent site did not start within {SITE_TIMEOUT:g} s.\n"
                     + site.report())
    if dead is not None:
        return _fail(dead.report())
    site_url, sign_in = site.find(SITE_PREFIX), site.find(SIGN_IN_PREFIX)

    _banner(state_dir, stack_env, site_url, sign_in, public_url, log_dir)
    supervisor.echo.set()
    while not supervisor.stop.is_set():
        dead = supervisor.dead()
        if dead is not None:
            return _fail(dead.report())
        supervisor.stop.wait(0.2)
    return 0


def _no_local_sign_in(site: Child) -> bool:
    """consent_web says so when operators sign in another way (or settings are missing)."""
    return any(site.find(p) is not None for p in ("Operators sign in with:", "Almost there:"))


def _devstack_here() -> bool:
    """Whether `python -m devstack`, started from here, would find it (located, not imported)."""
    import importlib.util

    return (Path.cwd() / "devstack" / "__main__.py").is_file() or \
        importlib.util.find_spec("devstack") is not None


def _fail(message: str) -> int:
    print(f"broker dev: {message}", file=sys.stderr, flush=True)
    return 1


def cli_command() -> str:
    """`broker` as it can be typed in any shell: this interpreter's own console script (the
    virtualenv is not activated there), or `python -m broker`."""
    here = Path(sys.executable).absolute()
    script = here.parent / "broker"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(str(here))} -m broker"


def _banner(state_dir: Path, env: dict[str, str], site_url: str | None, sign_in: str | None,
            public_url: str, log_dir: Path) -> None:
    rows = [
        ("Consent site", site_url or "?"),
        ("Operator sign-in", sign_in or "-"),
        ("Key Vault", env.get("BROKER_VAULT_URL", "?")),
        ("Entra ID", env.get("BROKER_AUTHORITY_HOST", "?")),
        ("Partner Center", env.get("BROKER_PARTNER_CENTER_URL", "?")),
        ("devstack admin", env.get("DEVSTACK_ADMIN_URL", "?")),
        ("Logs", str(log_dir)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["", "broker dev is up:"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    state = state_dir.absolute()
    lines += [
        "",
        "Use the CLI from another shell, in any directory:",
        f"  source {shlex.quote(str(state / 'env'))} && "
        f"source {shlex.quote(str(state / 'broker-env'))}",
        f"  {cli_command()} status",
        f"Invite links point at {public_url}. Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
