"""Wires the emulators together, binds them and writes `<state-dir>/env` for the clients."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import admin, ca, entra, keyvault, managed_identity, partner_center, seed, stats
from .context import Context
from .server import HOST, Servers, tls_context

ENV_FILE = "env"
PID_FILE = "devstack.pid"
DEFAULT_PORT_BASE = 47440
# offsets from the port base; base 0 means "any free port" for every service
PORTS = {"vault": 0, "authority": 1, "partner_center": 2, "admin": 3, "identity": 4}


@dataclass
class Options:
    state_dir: Path
    port_base: int = DEFAULT_PORT_BASE
    vault_throttle: bool = False
    latency_ms: dict[str, float] | None = None
    realistic: bool = False
    purge_protection: bool = False


class Devstack:
    def __init__(self, options: Options):
        self.options = options
        self.ctx = Context.create(
            options.state_dir.resolve(),
            vault_throttle=options.vault_throttle,
            latency_ms=options.latency_ms,
            purge_protection=options.purge_protection,
            realistic=options.realistic,
        )
        self._servers = Servers()

    @property
    def env_path(self) -> Path:
        return self.ctx.state_dir / ENV_FILE

    def start(self) -> dict[str, str]:
        """Bind every service, start serving and write the env file; returns the env values."""
        self.env_path.unlink(missing_ok=True)
        ca_cert, cert, key = ca.ensure_certificates(self.ctx.state_dir)
        tls = tls_context(cert, key)
        apps = {
            "vault": (keyvault.create_app(self.ctx), tls),
            "authority": (entra.create_app(self.ctx), tls),
            "partner_center": (partner_center.create_app(self.ctx), tls),
            "admin": (admin.create_app(self.ctx), tls),
            # App Service's identity endpoint is plain HTTP on loopback
            "identity": (managed_identity.create_app(self.ctx), None),
        }
        for name, (app, context) in apps.items():
            if name != "admin":
                stats.track(app, name, self.ctx.stats)
            port = self.options.port_base + PORTS[name] if self.options.port_base else 0
            server = self._servers.add(app, port, context)
            scheme = "https" if context else "http"
            host = "localhost" if context else HOST
            self.ctx.urls[name] = f"{scheme}://{host}:{server.server_port}"
        self.ctx.signer.issuer_base = self.ctx.urls["authority"]
        self._servers.start()
        env = self.environment(ca_cert)
        _write_env(self.env_path, env)
        return env

    def environment(self, ca_cert: Path) -> dict[str, str]:
        urls = self.ctx.urls
        return {
            "BROKER_VAULT_URL": urls["vault"] + "/",
            "BROKER_AUTHORITY_HOST": urls["authority"],
            "BROKER_PARTNER_CENTER_URL": urls["partner_center"],
            "BROKER_CPV_CLIENT_ID": seed.CPV_APP_ID,
            "BROKER_CPV_CLIENT_SECRET": self.ctx.cpv_client_secret,
            "IDENTITY_ENDPOINT": urls["identity"] + "/msi/token",
            "IDENTITY_HEADER": self.ctx.identity_header,
            "REQUESTS_CA_BUNDLE": str(ca_cert),
            "SSL_CERT_FILE": str(ca_cert),
            "NODE_EXTRA_CA_CERTS": str(ca_cert),  # Node reads it once, at start-up
            "DEVSTACK_ADMIN_URL": urls["admin"],
            "DEVSTACK_STATE_DIR": str(self.ctx.state_dir),
        }

    def stop(self) -> None:
        self._servers.stop()
        self.env_path.unlink(missing_ok=True)


def _write_env(path: Path, env: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def read_env(path: Path) -> dict[str, str]:
    """Parse an env file written by `start` (lines `export NAME=value`)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env
