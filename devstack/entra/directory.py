"""The emulated directory: tenants, users, app registrations and the resource APIs they call.

`world.load` builds one from the seeded world and `<state-dir>/directory.json`.
"""

from __future__ import annotations

import calendar
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from .. import seed

ALL_PRINCIPALS = "AllPrincipals"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
ADMIN_ROLES = frozenset({seed.GLOBAL_ADMINISTRATOR, seed.PRIVILEGED_ROLE_ADMINISTRATOR})
ROLE_NAMES = {
    "Global Administrator": seed.GLOBAL_ADMINISTRATOR,
    "Privileged Role Administrator": seed.PRIVILEGED_ROLE_ADMINISTRATOR,
}
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
# the resource a devstack vault names in its challenge on a `<name>.vault.localhost` host
LOCAL_VAULT_RESOURCE = re.compile(r"^https://vault\.localhost(:\d{1,5})?$")


class DirectoryError(ValueError):
    """directory.json is malformed; the message says where."""


@dataclass(frozen=True)
class Permission:
    name: str
    consent_title: str
    admin_only: bool = False


@dataclass(frozen=True)
class Resource:
    """A resource API (its service principal): what a scope or an `aud` claim names."""

    app_id: str
    name: str
    uri: str  # canonical identifier URI, the `aud` of its tokens
    delegated: dict[str, Permission]
    app_roles: tuple[str, ...] = ()
    # conditional access: tokens for it need MFA at sign-in
    requires_mfa: bool = False
    # only members of the tenant's AdminAgents group may get tokens for it
    requires_admin_agent: bool = False
    # the access token version it accepts: Microsoft's first-party APIs take v1.0 tokens
    token_version: str = "1.0"

    def permission(self, name: str) -> Permission | None:
        for key, permission in self.delegated.items():
            if key.lower() == name.lower():
                return permission
        return None


@dataclass(frozen=True)
class Tenant:
    id: str
    domain: str
    name: str
    admin_agents_group: str | None = None
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class User:
    upn: str
    tenant_id: str
    object_id: str
    name: str
    password: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    mfa_registered: bool = True

    @property
    def is_admin(self) -> bool:
        """Global Administrator or Privileged Role Administrator: may consent for everyone."""
        return bool(ADMIN_ROLES & set(self.roles))

    @property
    def wids(self) -> list[str]:
        return [*self.roles, seed.MEMBER_USER_ROLE]


@dataclass(frozen=True)
class Secret:
    value: str
    expires: float | None  # epoch seconds on the emulated clock; None never expires

    @property
    def hint(self) -> str:
        return self.value[:3]


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    tenant_id: str  # home tenant
    multi_tenant: bool
    redirect_uris: tuple[str, ...]
    secrets: tuple[Secret, ...]
    # statically registered permissions: resource uri -> delegated scope names (for /.default)
    permissions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # application permissions granted for client credentials: resource uri -> role names
    app_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # `groupMembershipClaims` in the manifest: id tokens list the user's groups
    group_claims: bool = False

    def matches_redirect(self, candidate: str) -> bool:
        """Exact match, except that loopback URIs match on any port (as Entra does)."""
        return any(_redirect_matches(r, candidate) for r in self.redirect_uris)


@dataclass(frozen=True)
class Grant:
    """A delegated permission grant (consent): one principal, or ALL_PRINCIPALS for a tenant."""

    tenant_id: str
    client_id: str
    principal: str
    resource: str
    permission: str


class Directory:
    def __init__(self, tenants, users, apps, resources, grants):
        self.tenants: dict[str, Tenant] = {t.id: t for t in tenants}
        self.users: dict[str, User] = {u.upn.lower(): u for u in users}
        self.apps: dict[str, App] = {a.app_id.lower(): a for a in apps}
        self.resources: list[Resource] = list(resources)
        self.seeded_grants: tuple[Grant, ...] = tuple(grants)

    def tenant(self, name: str) -> Tenant | None:
        """A tenant by GUID or verified domain (case-insensitive)."""
        key = name.lower()
        for tenant in self.tenants.values():
            if key in (tenant.id.lower(), tenant.domain.lower()):
                return tenant
        return None

    def user(self, upn: str) -> User | None:
        return self.users.get(upn.strip().lower())

    def user_by_oid(self, tenant_id: str, oid: str) -> User | None:
        for user in self.users.values():
            if user.tenant_id == tenant_id and user.object_id == oid:
                return user
        return None

    def app(self, app_id: str) -> App | None:
        return self.apps.get(app_id.strip().lower())

    def resource(self, identifier: str) -> Resource | None:
        """A resource by identifier URI (trailing slash ignored) or app id.

        `https://vault.localhost:<port>` is Key Vault under the identifier devstack's vault
        challenges with on its `*.vault.localhost` names (tokens carry it as their audience),
        as `https://vault.azure.net` is for Azure's vault hosts.
        """
        key = identifier.rstrip("/").lower()
        for resource in self.resources:
            if key in (resource.uri.lower(), resource.app_id.lower()):
                return resource
        if LOCAL_VAULT_RESOURCE.match(key):
            vault = self.resource(seed.VAULT_RESOURCE)
            return replace(vault, uri=key) if vault is not None else None
        return None

    def is_admin_agent(self, user: User) -> bool:
        group = self.tenants[user.tenant_id].admin_agents_group
        return group is not None and group in user.groups

    def service_principal_id(self, app_id: str, tenant_id: str) -> str:
        """A stable object id for an app's service principal in a tenant.

        A managed identity is a service principal of the vendor tenant whose object id is the
        one the identity endpoint puts in `oid` (`devstack.seed.IDENTITIES`)."""
        identity = self.managed_identity(app_id)
        if identity is not None and tenant_id == seed.CPV_TENANT_ID:
            return identity.object_id
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}"))

    def managed_identity(self, client_id: str) -> seed.Identity | None:
        """The managed identity whose service principal has this client (app) id."""
        key = client_id.strip().lower()
        return next((i for i in seed.IDENTITIES if i.client_id.lower() == key), None)


def _redirect_matches(registered: str, candidate: str) -> bool:
    if registered == candidate:
        return True
    reg, cand = urlsplit(registered), urlsplit(candidate)
    if reg.hostname not in LOOPBACK_HOSTS:
        return False
    try:
        cand.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return False
    return (
        reg.scheme == cand.scheme
        and reg.hostname == cand.hostname
        and (reg.path or "/") == (cand.path or "/")
        and reg.query == cand.query
        and not cand.fragment
        and not cand.username
        and not cand.password
    )


def parse_time(text: str) -> float:
    """ISO 8601 UTC (`2099-12-31T23:59:59Z` or a date) to epoch seconds."""
    text = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    raise DirectoryError(f"{text!r} is not a date like 2099-12-31 or 2099-12-31T23:59:59Z")
