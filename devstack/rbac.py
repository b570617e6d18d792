"""Azure RBAC for the Key Vault data plane: built-in roles, role assignments, and the decision.

A vault with `enableRbacAuthorization` asks one question per request: does a role assigned to
the caller's object id, at a scope that contains the resource (the subscription, the resource
group, the vault, or the one secret), grant the request's data action? If none does, the answer
is 403 `Forbidden`/`ForbiddenByRbac` (see `devstack.keyvault.auth`). The roles here are Azure's
built-in ones by their real role definition ids and data actions; the assignments are seeded
from `devstack.seed` into `<state-dir>/rbac.json` and changed through `POST /rbac` on the admin
endpoint. `POST /reset` puts the seeded assignments back.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from . import seed

RBAC_FILE = "rbac.json"
ROLE_DEFINITIONS = "/providers/Microsoft.Authorization/roleDefinitions/"

# the secrets data actions, as Key Vault names them in role definitions and in its 403s
GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
READ_METADATA = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
SET_SECRET = "Microsoft.KeyVault/vaults/secrets/setSecret/action"
UPDATE_SECRET = "Microsoft.KeyVault/vaults/secrets/update/action"
DELETE_SECRET = "Microsoft.KeyVault/vaults/secrets/delete"
BACKUP_SECRET = "Microsoft.KeyVault/vaults/secrets/backup/action"
RESTORE_SECRET = "Microsoft.KeyVault/vaults/secrets/restore/action"
RECOVER_SECRET = "Microsoft.KeyVault/vaults/secrets/recover/action"
PURGE_SECRET = "Microsoft.KeyVault/vaults/secrets/purge/action"


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    data_actions: tuple[str, ...]

    def grants(self, action: str) -> bool:
        # role definitions use `*` wildcards; action names compare case-insensitively
        return any(fnmatchcase(action.lower(), pattern.lower()) for pattern in self.data_actions)


ADMINISTRATOR = Role("00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator",
                     ("Microsoft.KeyVault/vaults/*",))
SECRETS_OFFICER = Role("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer",
                       ("Microsoft.KeyVault/vaults/secrets/*",))
SECRETS_USER = Role("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User",
                    (GET_SECRET, READ_METADATA))
READER = Role("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader",
              ("Microsoft.KeyVault/vaults/*/read", READ_METADATA))
ROLES = {role.id: role for role in (ADMINISTRATOR, SECRETS_OFFICER, SECRETS_USER, READER)}

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
# the scopes an assignment may name: subscription, resource group, vault, or one secret
SCOPE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)"
    r"(/resourceGroups/(?P<rg>[^/]+)"
    r"(/providers/Microsoft\.KeyVault/vaults/(?P<vault>[0-9a-z-]{3,24})"
    r"(/secrets/(?P<secret>[0-9a-z-]{1,127}))?)?)?$",
    re.I,
)


class RbacError(ValueError):
    """A role assignment request that cannot be honoured; the message says which field."""


def role(reference: str) -> Role:
    """A built-in role by id, by `.../roleDefinitions/<id>` or by name (any case)."""
    text = str(reference).strip()
    key = text.rsplit("/", 1)[-1].lower() if "/" in text else text.lower()
    for candidate in ROLES.values():
        if key in (candidate.id, candidate.name.lower()):
            return candidate
    names = ", ".join(r.name for r in ROLES.values())
    raise RbacError(f"'roleDefinitionId' must be one of the built-in roles: {names}.")


def secret_scope(vault_name: str, secret_name: str) -> str:
    return f"{seed.vault_scope(vault_name)}/secrets/{secret_name}"


def contains(scope: str, resource: str) -> bool:
    """True when `resource` is `scope` or below it (ARM ids compare case-insensitively)."""
    scope, resource = scope.rstrip("/").lower(), resource.rstrip("/").lower()
    return resource == scope or resource.startswith(scope + "/")


@dataclass(frozen=True)
class Assignment:
    name: str  # the assignment's id, `guid(scope, principal, role)` as Bicep templates name it
    principal_id: str
    role_id: str
    scope: str

    def to_json(self) -> dict:
        return {"name": self.name, "principalId": self.principal_id,
                "roleDefinitionId": ROLE_DEFINITIONS + self.role_id,
                "roleName": ROLES[self.role_id].name, "scope": self.scope}


def assignment(principal_id: str, role_ref: str, scope: str) -> Assignment:
    """A checked assignment; raises RbacError naming the field that is wrong."""
    if not isinstance(principal_id, str) or not GUID.match(principal_id.strip()):
        raise RbacError("'principalId' must be the object id (a GUID) of a user or identity.")
    if not isinstance(role_ref, str):
        raise RbacError("'roleDefinitionId' must be a role definition id or a role name.")
    found = role(role_ref)
    match = SCOPE.match(scope.strip()) if isinstance(scope, str) else None
    if match is None or match["sub"].lower() != seed.SUBSCRIPTION_ID:
        raise RbacError(
            "'scope' must be a vault, one of its secrets, the resource group or the subscription, "
            f"such as {seed.vault_scope(seed.TOKEN_VAULT_NAME)}/secrets/rt-contoso.")
    clean = scope.strip().rstrip("/")
    principal = principal_id.strip().lower()
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{clean.lower()}|{principal}|{found.id}"))
    return Assignment(name, principal, found.id, clean)


def seeded() -> list[Assignment]:
    """The design's least privilege: who holds which role where when devstack starts."""
    token, config = (seed.vault_scope(seed.TOKEN_VAULT_NAME),
                     seed.vault_scope(seed.CONFIG_VAULT_NAME))
    grants = [
        # the operator (the system-assigned identity every existing test and `make run` use)
        (seed.SYSTEM_IDENTITY, ADMINISTRATOR, token),
        (seed.SYSTEM_IDENTITY, ADMINISTRATOR, config),
        # the rotation app writes new token versions and reads the CPV secret
        (seed.ROTATION_IDENTITY, SECRETS_OFFICER, token),
        (seed.ROTATION_IDENTITY, SECRETS_USER, config),
        # the consent site writes placeholders, consents, tags, deletes on remove; reads its keys
        (seed.SITE_IDENTITY, SECRETS_OFFICER, token),
        (seed.SITE_IDENTITY, SECRETS_USER, config),
    ]
    # consumers hold nothing until an operator grants them one credential's secrets
    return [assignment(identity.object_id, granted.id, scope)
            for identity, granted, scope in grants]


class Rbac:
    """The role assignments of devstack's subscription, persisted in `<state-dir>/rbac.json`."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / RBAC_FILE
        self._lock = threading.Lock()
        self._assignments: dict[str, Assignment] = {}
        if self._path.exists():
            data = json.loads(self._path.read_text())
            self._assignments = {a["name"]: Assignment(**a) for a in data["assignments"]}
        else:
            self.reset()

    def reset(self) -> None:
        with self._lock:
            self._assignments = {a.name: a for a in seeded()}
            self._save()

    def add(self, principal_id: str, role_ref: str, scope: str) -> tuple[Assignment, bool]:
        """Assign a role; (the assignment, whether it is new). Assigning it again is a no-op."""
        new = assignment(principal_id, role_ref, scope)
        with self._lock:
            changed = new.name not in self._assignments
            self._assignments[new.name] = new
            self._save()
        return new, changed

    def remove(self, principal_id: str, role_ref: str, scope: str) -> tuple[Assignment, bool]:
        """Remove an assignment; (the assignment, whether it existed)."""
        gone = assignment(principal_id, role_ref, scope)
        with self._lock:
            changed = self._assignments.pop(gone.name, None) is not None
            self._save()
        return gone, changed

    def list(self, principal_id: str | None = None) -> list[Assignment]:
        with self._lock:
            found = list(self._assignments.values())
        if principal_id:
            found = [a for a in found if a.principal_id == principal_id.strip().lower()]
        return sorted(found, key=lambda a: (a.scope.lower(), a.principal_id, a.role_id))

    def allows(self, principal_id: str | None, action: str, resource: str) -> bool:
        """Whether any role of `principal_id` at a scope containing `resource` grants `action`."""
        if not principal_id:
            return False
        return any(ROLES[a.role_id].grants(action) and contains(a.scope, resource)
                   for a in self.list(principal_id))

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"assignments": [asdict(a) for a in
                                                   _ordered(self._assignments.values())]},
                                  indent=1))
        os.replace(tmp, self._path)


def _ordered(assignments: Iterable[Assignment]) -> list[Assignment]:
    return sorted(assignments, key=lambda a: (a.scope.lower(), a.principal_id, a.role_id))
