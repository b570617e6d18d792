"""Wires the emulators together, binds them and writes `<state-dir>/env` for the clients.

Two vaults, as the least-privilege design has them: the token vault (`BROKER_VAULT_URL`,
`rt-<id>` and `cs-<id>` only) and the config vault (`BROKER_CONFIG_VAULT_URL`), seeded with the
broker's own secrets, where no consumer holds a role. The env file also names each managed
identity and the vaults' RBAC scopes, with a comment line saying how a client picks it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import admin, ca, entra, keyvault, managed_identity, partner_center, seed, stats
from .context import Context
from .keyvault.store import SecretMissing, Store
from .server import HOST, Servers, tls_context

ENV_FILE = "env"
PID_FILE = "devstack.pid"
DEFAULT_PORT_BASE = 47440
# offsets from the port base; base 0 means "any free port" for every service
PORTS = {"vault": 0, "authority": 1, "partner_center": 2, "admin": 3, "identity": 4,
         "config_vault": 5}


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
            "config_vault": (keyvault.create_app(self.ctx, "config", self._seed_config), tls),
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
        _write_env(self.env_path, env, identity_comments())
        return env

    def _seed_config(self, store: Store) -> None:
        """The broker's own secrets, put in the config vault once (and again after a reset)."""
        for name, value in ((seed.SIGNING_KEY_SECRET, self.ctx.broker_secret_key),
                            (seed.CPV_SECRET_NAME, self.ctx.cpv_client_secret),
                            (seed.OPERATOR_SECRET_NAME, seed.OPERATOR_APP_SECRET)):
            try:
                store.get(name, None)
            except SecretMissing:
                store.set(name, value, content_type="text/plain", tags={"seeded-by": "devstack"},
                          enabled=True, not_before=None, expires=None)

    def environment(self, ca_cert: Path) -> dict[str, str]:
        urls = self.ctx.urls
        return {
            "BROKER_VAULT_URL": urls["vault"] + "/",
            "BROKER_CONFIG_VAULT_URL": urls["config_vault"] + "/",
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
            "DEVSTACK_VAULT_SCOPE": seed.vault_scope(seed.TOKEN_VAULT_NAME),
            "DEVSTACK_CONFIG_VAULT_SCOPE": seed.vault_scope(seed.CONFIG_VAULT_NAME),
            **identity_environment(),
        }

    def stop(self) -> None:
        self._servers.stop()
        self.env_path.unlink(missing_ok=True)


def identity_environment() -> dict[str, str]:
    """`DEVSTACK_<KEY>_CLIENT_ID` and `_OBJECT_ID` of every seeded managed identity."""
    env = {}
    for identity in seed.IDENTITIES:
        env[f"DEVSTACK_{identity.key}_CLIENT_ID"] = identity.client_id
        env[f"DEVSTACK_{identity.key}_OBJECT_ID"] = identity.object_id
    return env


IDENTITY_ROLES = {
    "OPERATOR": "system-assigned, the default: Key Vault Administrator on both vaults",
    "ROTATION": "the rotation app: Secrets Officer on the token vault, Secrets User on the "
                "config vault",
    "SITE": "the consent site: Secrets Officer on the token vault, Secrets User on the config "
            "vault",
    "CONSUMER_A": "a consumer: no role until an operator grants it a credential's secrets",
    "CONSUMER_B": "a consumer: no role until an operator grants it a credential's secrets",
}


def identity_comments() -> dict[str, str]:
    """A comment above each identity's client id: what it may do and how a client picks it."""
    comments = {}
    for identity in seed.IDENTITIES:
        how = ("DefaultAzureCredential() and ManagedIdentityCredential() use it when "
               "AZURE_CLIENT_ID is unset" if not identity.user_assigned else
               f"AZURE_CLIENT_ID=$DEVSTACK_{identity.key}_CLIENT_ID makes DefaultAzureCredential "
               f"pick it; or ManagedIdentityCredential(client_id=...)")
        comments[f"DEVSTACK_{identity.key}_CLIENT_ID"] = (
            f"{identity.name}, {IDENTITY_ROLES[identity.key]}. {how}")
    comments["DEVSTACK_VAULT_SCOPE"] = (
        "RBAC scopes for POST $DEVSTACK_ADMIN_URL/rbac; a secret's is <vault scope>/secrets/<name>")
    return comments


def _write_env(path: Path, env: dict[str, str], comments: dict[str, str] | None = None) -> None:
    comments = comments or {}
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(
        (f"# {comments[k]}\n" if k in comments else "") + f"export {k}={shlex.quote(v)}\n"
        for k, v in env.items()))
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
