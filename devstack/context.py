"""What every devstack service shares: state dir, clock, faults, signer, role assignments, URLs
and dev secrets."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import Clock
from .faults import Faults
from .rbac import Rbac
from .stats import RequestStats
from .tokens import Signer

SECRETS_FILE = "dev-secrets.json"


@dataclass
class Context:
    state_dir: Path
    clock: Clock
    faults: Faults
    signer: Signer
    rbac: Rbac
    vault_throttle: bool = False
    # start-up values of every vault's settings (`--purge-protection`, `--realistic`)
    purge_protection: bool = False
    realistic: bool = False
    # filled by the stack once the servers are bound: vault, authority, partner_center, admin,
    # identity
    urls: dict[str, str] = field(default_factory=dict)
    cpv_client_secret: str = field(default="", repr=False)
    identity_header: str = field(default="", repr=False)
    broker_secret_key: str = field(default="", repr=False)
    # services register what `POST /reset` and `POST /revoke` must do
    reset_hooks: list[Callable[[], None]] = field(default_factory=list)
    revoke_hook: Callable[[str], int] | None = None
    # `POST /mfa`: (tenant, required) -> the tenant's id; ValueError for an unknown tenant
    mfa_policy_hook: Callable[[str, bool], str] | None = None
    # requests counted at the servers (`GET /stats` on the admin endpoint)
    stats: RequestStats = field(default_factory=RequestStats)
    # each vault's keyvault.settings.VaultSettings by name, changed by `POST /vaults`
    vaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        state_dir: Path,
        *,
        vault_throttle: bool = False,
        latency_ms: dict[str, float] | None = None,
        purge_protection: bool = False,
        realistic: bool = False,
    ) -> Context:
        state_dir.mkdir(parents=True, exist_ok=True)
        dev_secrets = _dev_secrets(state_dir / SECRETS_FILE)
        return cls(
            state_dir=state_dir,
            clock=Clock(state_dir / "clock.json"),
            faults=Faults(latency_ms),
            signer=Signer(state_dir),
            rbac=Rbac(state_dir),
            vault_throttle=vault_throttle,
            purge_protection=purge_protection,
            realistic=realistic,
            cpv_client_secret=dev_secrets["cpv_client_secret"],
            identity_header=dev_secrets["identity_header"],
            broker_secret_key=dev_secrets["broker_secret_key"],
        )

    def reset(self) -> None:
        self.faults.clear()
        self.clock.reset()
        self.rbac.reset()
        for hook in self.reset_hooks:
            hook()


def _dev_secrets(path: Path) -> dict[str, str]:
    """Secrets made once per state dir, so a restarted devstack keeps its env file valid."""
    values = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        # shaped like an Entra client secret: 40 chars with a `~` in it
        "cpv_client_secret": lambda: ("dv" + secrets.token_urlsafe(27)[:5] + "~"
                                      + secrets.token_urlsafe(24)),
        "identity_header": lambda: secrets.token_hex(16),
        # the broker's session and invite signing key, seeded into the config vault only
        "broker_secret_key": lambda: secrets.token_urlsafe(48),
    }
    missing = {name: make() for name, make in wanted.items() if name not in values}
    if missing:
        values.update(missing)
        path.write_text(json.dumps(values))
        path.chmod(0o600)
    return values
