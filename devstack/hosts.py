"""`python -m devstack hosts [NAME ...]`: the hosts-file lines a named devstack vault needs.

Every Key Vault SDK checks by default that the vault's challenge names a resource whose domain
the vault's host ends with, so a client that keeps that check on calls devstack's vault as
`https://<name>.vault.localhost:<port>` (the challenge then names `https://vault.localhost:<port>`)
rather than `https://localhost:<port>`. glibc and Node do not resolve `*.localhost` names by
themselves, so each such name needs a line `127.0.0.1 <name>.vault.localhost` in /etc/hosts.
This prints the missing lines and, run as root, adds them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")
DOMAIN = "vault.localhost"
DEFAULT_NAMES = ("devvault",)
# Key Vault's own rule for vault names: 3-24 letters, digits and hyphens, starting with a letter
VAULT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")


def host_names(names: Iterable[str]) -> list[str]:
    hosts = []
    for name in names:
        if not VAULT_NAME.match(name) or "--" in name:
            raise ValueError(f"{name!r} is not a Key Vault name (3-24 letters, digits, hyphens)")
        hosts.append(f"{name.lower()}.{DOMAIN}")
    return hosts


def missing_lines(hosts: Iterable[str], hosts_file: Path = HOSTS_FILE) -> list[str]:
    """`127.0.0.1 <host>` for each host the hosts file does not map to loopback yet."""
    mapped: set[str] = set()
    text = hosts_file.read_text() if hosts_file.exists() else ""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
            mapped.update(name.lower() for name in fields[1:])
    return [f"127.0.0.1 {host}" for host in hosts if host not in mapped]


def add_lines(lines: list[str], hosts_file: Path = HOSTS_FILE) -> None:
    text = hosts_file.read_text() if hosts_file.exists() else ""
    separator = "" if not text or text.endswith("\n") else "\n"
    with hosts_file.open("a") as out:
        out.write(separator + "".join(f"{line}\n" for line in lines))


def main(names: list[str], hosts_file: Path = HOSTS_FILE, *, can_write: bool | None = None
         ) -> int:
    """Print the missing lines on stdout; as root (or `can_write`), add them to the file."""
    try:
        hosts = host_names(names or DEFAULT_NAMES)
    except ValueError as exc:
        print(f"devstack hosts: {exc}", file=sys.stderr)
        return 2
    lines = missing_lines(hosts, hosts_file)
    if not lines:
        print(f"devstack hosts: {hosts_file} already maps {', '.join(hosts)}", file=sys.stderr)
        return 0
    print("\n".join(lines))
    if can_write is None:
        can_write = os.geteuid() == 0
    if not can_write:
        print(f"devstack hosts: add these lines to {hosts_file} (run this as root to add them, "
              f"or pipe it to `sudo tee -a {hosts_file}`)", file=sys.stderr)
        return 1
    try:
        add_lines(lines, hosts_file)
    except OSError as exc:
        print(f"devstack hosts: cannot write {hosts_file}: {exc}", file=sys.stderr)
        return 1
    print(f"devstack hosts: added {len(lines)} line(s) to {hosts_file}", file=sys.stderr)
    return 0
