"""Run devstack as a real separate process for the tests, and drive its admin endpoints."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from devstack.stack import ENV_FILE, read_env
from tests.support.process import server_process, stop

START_TIMEOUT = 30


@dataclass
class RunningDevstack:
    state_dir: Path
    env: dict[str, str]
    process: subprocess.Popen

    @property
    def vault_url(self) -> str:
        return self.env["BROKER_VAULT_URL"]

    @property
    def authority(self) -> str:
        return self.env["BROKER_AUTHORITY_HOST"]

    @property
    def ca_bundle(self) -> str:
        return self.env["REQUESTS_CA_BUNDLE"]

    def admin(self, path: str, body: dict | None = None) -> dict:
        response = requests.post(
            self.env["DEVSTACK_ADMIN_URL"] + path, json=body or {}, verify=self.ca_bundle,
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def state(self) -> dict:
        response = requests.get(self.env["DEVSTACK_ADMIN_URL"] + "/", verify=self.ca_bundle,
                                timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.admin("/reset")

    def revoke(self, user: str) -> dict:
        return self.admin("/revoke", {"user": user})

    def advance_days(self, days: float) -> None:
        self.admin("/clock", {"advance_days": days})

    def faults(self, service: str, status: int | str, rate: float) -> None:
        self.admin("/faults", {"service": service, "status": status, "rate": rate})

    @contextlib.contextmanager
    def mfa_not_required(self, tenant: str = "contoso.example") -> Iterator[None]:
        """The tenant's Conditional Access stops asking for MFA: a user without an MFA
        method signs in with password only and gets tokens (amr ["pwd"])."""
        self.admin("/mfa", {"tenant": tenant, "required": False})
        try:
            yield
        finally:
            self.admin("/mfa", {"tenant": tenant, "required": True})

    def vault_settings(self, vault: str = "main", **settings: bool) -> dict:
        return self.admin("/vaults", {"vault": vault, **settings})

    def stats(self) -> dict:
        response = requests.get(self.env["DEVSTACK_ADMIN_URL"] + "/stats",
                                verify=self.ca_bundle, timeout=10)
        response.raise_for_status()
        return response.json()

    @property
    def config_vault_url(self) -> str:
        return self.env["BROKER_CONFIG_VAULT_URL"]

    def scope(self, secret: str | None = None, *, vault: str = "token") -> str:
        """The RBAC scope of the token or config vault, or of one of its secrets."""
        base = self.env["DEVSTACK_VAULT_SCOPE" if vault == "token" else
                        "DEVSTACK_CONFIG_VAULT_SCOPE"]
        return f"{base}/secrets/{secret}" if secret else base

    def grant(self, principal_id: str, role: str, scope: str) -> dict:
        """Assign a built-in role (id or name) at a scope, as `az role assignment create`."""
        return self.admin("/rbac", {"op": "add", "principalId": principal_id,
                                    "roleDefinitionId": role, "scope": scope})

    def ungrant(self, principal_id: str, role: str, scope: str) -> dict:
        return self.admin("/rbac", {"op": "remove", "principalId": principal_id,
                                    "roleDefinitionId": role, "scope": scope})

    def stop(self) -> None:
        stop(self.process)


@contextlib.contextmanager
def running_devstack(state_dir: Path, *args: str) -> Iterator[RunningDevstack]:
    """Start `python -m devstack up --foreground` on free ports and wait until it answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    # DEVSTACK_UP_ARGS runs a suite against other switches, e.g. `--realistic`
    args = (*args, *os.environ.get("DEVSTACK_UP_ARGS", "").split())
    env_file = state_dir / ENV_FILE
    env_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "devstack", "up", "--foreground", "--state-dir", str(state_dir),
            "--port-base", "0", *args]
    with server_process(argv, log=state_dir / "devstack.log", ready=env_file.exists,
                        what="devstack", timeout=START_TIMEOUT,
                        cwd=Path(__file__).resolve().parents[2]) as process:
        yield RunningDevstack(state_dir, read_env(env_file), process)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, restoring the old ones after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
