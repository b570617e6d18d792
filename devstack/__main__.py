"""`python -m devstack up|down|status|hosts`: run the local Azure stand-ins.

`up` starts them in the background and returns once they answer (`--foreground` keeps them in
this process until Ctrl-C); `down` stops the one recorded in the state dir.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import hosts
from .stack import DEFAULT_PORT_BASE, ENV_FILE, PID_FILE, Devstack, Options, read_env

DEFAULT_STATE_DIR = Path(".devstack")
START_TIMEOUT = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start devstack")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help="first of six consecutive ports; 0 picks free ports")
    up.add_argument("--vault-throttle", action="store_true",
                    help="enforce Key Vault's service limits (429 with Retry-After)")
    up.add_argument("--latency", type=_latency, default=None, metavar="MS|vault=MS,entra=MS",
                    help="added network delay; a bare number applies to the vault")
    up.add_argument("--realistic", action="store_true",
                    help="Key Vault's real timing: deletes take seconds, pages come back short")
    up.add_argument("--purge-protection", action="store_true",
                    help="vaults refuse purges, as the infra deploys them")
    up.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C")
    for name in ("down", "status"):
        cmd = sub.add_parser(name, help=f"{name} devstack")
        cmd.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    hosts_cmd = sub.add_parser("hosts", help="print (as root, add) the hosts lines that "
                               "https://<name>.vault.localhost needs")
    hosts_cmd.add_argument("names", nargs="*", metavar="NAME",
                           help=f"vault names (default: {' '.join(hosts.DEFAULT_NAMES)})")
    hosts_cmd.add_argument("--hosts-file", type=Path, default=hosts.HOSTS_FILE)
    args = parser.parse_args(argv)
    if args.command == "hosts":
        return hosts.main(args.names, args.hosts_file)
    if args.command == "up":
        if not 0 <= args.port_base <= 65529:
            parser.error("--port-base must be 0 or a port number below 65530")
        return _foreground(args) if args.foreground else _background(args, argv or sys.argv[1:])
    if args.command == "down":
        return _down(args.state_dir)
    return _status(args.state_dir)


def _latency(text: str) -> dict[str, float]:
    try:
        if "=" not in text:
            return {"vault": float(text)}
        pairs = dict(part.split("=", 1) for part in text.split(","))
        values = {k.strip(): float(v) for k, v in pairs.items()}
    except ValueError as exc:
        raise argparse.ArgumentTypeError("use MS or vault=MS,entra=MS") from exc
    if set(values) - {"vault", "entra"} or any(v < 0 for v in values.values()):
        raise argparse.ArgumentTypeError("services are vault and entra; delays are >= 0")
    return values


def _foreground(args) -> int:
    stack = Devstack(Options(args.state_dir, args.port_base, args.vault_throttle, args.latency,
                             realistic=args.realistic,
                             purge_protection=args.purge_protection))
    try:
        env = stack.start()
    except OSError as exc:
        print(f"devstack: cannot start: {exc}", file=sys.stderr)
        return 1
    pid_file = stack.ctx.state_dir / PID_FILE
    pid_file.write_text(str(os.getpid()))
    _print_urls(env)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    stack.stop()
    pid_file.unlink(missing_ok=True)
    return 0


def _background(args, argv: list[str]) -> int:
    state_dir: Path = args.state_dir
    if _running_pid(state_dir):
        print(f"devstack is already running (state dir {state_dir}); `python -m devstack down`.")
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / ENV_FILE).unlink(missing_ok=True)
    log = open(state_dir / "devstack.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", *argv, "--foreground"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if (state_dir / ENV_FILE).exists():
            _print_urls(read_env(state_dir / ENV_FILE))
            print(f"Load the settings with: source {state_dir / ENV_FILE}")
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.1)
    print(f"devstack did not start; see {state_dir / 'devstack.log'}", file=sys.stderr)
    return 1


def _down(state_dir: Path) -> int:
    pid = _running_pid(state_dir)
    if not pid:
        print("devstack is not running.")
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _running_pid(state_dir):
            print("devstack stopped.")
            return 0
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    print("devstack killed.")
    return 0


def _status(state_dir: Path) -> int:
    if _running_pid(state_dir) and (state_dir / ENV_FILE).exists():
        _print_urls(read_env(state_dir / ENV_FILE))
        return 0
    print("devstack is not running.")
    return 3


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def _print_urls(env: dict[str, str]) -> None:
    print("devstack is up:")
    print(f"  Key Vault        {env['BROKER_VAULT_URL']}")
    print(f"  Entra ID         {env['BROKER_AUTHORITY_HOST']}")
    print(f"  Partner Center   {env['BROKER_PARTNER_CENTER_URL']}")
    print(f"  Managed identity {env['IDENTITY_ENDPOINT']}")
    print(f"  Admin            {env['DEVSTACK_ADMIN_URL']}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
