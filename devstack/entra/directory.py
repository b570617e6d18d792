"""The emulated directory: tenants, users, app registrations and the resource APIs they call.

The seeded world comes from `devstack.seed`; `<state-dir>/directory.json` can add tenants,
users and apps, or extra redirect URIs for seeded apps (the schema is in the package docstring).
"""

from __future__ import annotations

import calendar
import json
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from .. import seed

DIRECTORY_FILE = "directory.json"
ALL_PRINCIPALS = "AllPrincipals"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
ADMIN_ROLES = frozenset({seed.GLOBAL_ADMINISTRATOR, seed.PRIVILEGED_ROLE_ADMINISTRATOR})
ROLE_NAMES = {
    "Global Administrator": seed.GLOBAL_ADMINISTRATOR,
    "Privileged Role Administrator": seed.PRIVILEGED_ROLE_ADMINISTRATOR,
}
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


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
        """A resource by identifier URI (trailing slash ignored) or app id."""
        key = identifier.rstrip("/").lower()
        for resource in self.resources:
            if key in (resource.uri.lower(), resource.app_id.lower()):
                return resource
        return None

    def is_admin_agent(self, user: User) -> bool:
        group = self.tenants[user.tenant_id].admin_agents_group
        return group is not None and group in user.groups

    def service_principal_id(self, app_id: str, tenant_id: str) -> str:
        """A stable object id for an app's service principal in a tenant."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}"))


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


def _resources() -> list[Resource]:
    return [
        Resource(
            app_id=seed.PARTNER_CENTER_APP_ID,
            name="Microsoft Partner Center",
            uri=seed.PARTNER_CENTER_RESOURCE,
            delegated={
                "user_impersonation": Permission(
                    "user_impersonation",
                    "Access Partner Center on your behalf (Admin Agent operations on your "
                    "customers)",
                    admin_only=True,
                ),
            },
            requires_mfa=True,
            requires_admin_agent=True,
        ),
        Resource(
            app_id=seed.GRAPH_APP_ID,
            name="Microsoft Graph",
            uri=seed.GRAPH_RESOURCE,
            delegated={
                "User.Read": Permission("User.Read", "Sign you in and read your profile"),
                "Directory.Read.All": Permission(
                    "Directory.Read.All", "Read directory data", admin_only=True
                ),
            },
            app_roles=("Directory.Read.All", "Application.Read.All"),
        ),
        Resource(
            app_id=seed.ARM_APP_ID,
            name="Windows Azure Service Management API",
            uri=seed.ARM_RESOURCE,
            delegated={
                "user_impersonation": Permission(
                    "user_impersonation", "Access Azure Resource Manager as you"
                ),
            },
        ),
        Resource(
            app_id=seed.VAULT_APP_ID,
            name="Azure Key Vault",
            uri=seed.VAULT_RESOURCE,
            delegated={
                "user_impersonation": Permission(
                    "user_impersonation", "Access Azure Key Vault as you"
                ),
            },
        ),
    ]


def _seeded(cpv_client_secret: str) -> tuple[list, list, list, list]:
    contoso = Tenant(
        id=seed.PARTNER_TENANT_ID,
        domain=seed.PARTNER_TENANT_DOMAIN,
        name=seed.PARTNER_TENANT_NAME,
        admin_agents_group=seed.ADMIN_AGENTS_GROUP_ID,
        groups={seed.ADMIN_AGENTS_GROUP_ID: "AdminAgents"},
    )
    fabrikam = Tenant(
        id=seed.CPV_TENANT_ID,
        domain=seed.CPV_TENANT_DOMAIN,
        name=seed.CPV_TENANT_NAME,
        groups={seed.OPERATOR_GROUP_ID: seed.OPERATOR_GROUP_NAME},
    )
    ga, agents = (seed.GLOBAL_ADMINISTRATOR,), (seed.ADMIN_AGENTS_GROUP_ID,)
    users = [
        User(seed.PARTNER_ADMIN_UPN, contoso.id, seed.PARTNER_ADMIN_OBJECT_ID, "Contoso Admin",
             seed.PASSWORD, roles=ga, groups=agents),
        User(seed.PARTNER_AGENT_UPN, contoso.id, seed.PARTNER_AGENT_OBJECT_ID, "Contoso Agent",
             seed.PASSWORD, groups=agents),
        User(seed.PARTNER_NOMFA_UPN, contoso.id, seed.PARTNER_NOMFA_OBJECT_ID,
             "Contoso No-MFA Admin", seed.PASSWORD, roles=ga, groups=agents,
             mfa_registered=False),
        User(seed.PARTNER_USER_UPN, contoso.id, seed.PARTNER_USER_OBJECT_ID, "Contoso User",
             seed.PASSWORD),
        User(seed.OPERATOR_UPN, fabrikam.id, seed.OPERATOR_OBJECT_ID, "Fabrikam Operator",
             seed.PASSWORD, groups=(seed.OPERATOR_GROUP_ID,)),
    ]
    partner_permissions = {
        seed.PARTNER_CENTER_RESOURCE: ("user_impersonation",),
        seed.GRAPH_RESOURCE: ("User.Read", "Directory.Read.All"),
        seed.ARM_RESOURCE: ("user_impersonation",),
    }
    apps = [
        App(seed.CPV_APP_ID, seed.CPV_APP_NAME, fabrikam.id, True, seed.CONSENT_REDIRECT_URIS,
            (Secret(cpv_client_secret, None),), partner_permissions,
            {seed.GRAPH_RESOURCE: ("Directory.Read.All",)}),
        App(seed.PARTNER_APP_ID, seed.PARTNER_APP_NAME, contoso.id, False,
            seed.CONSENT_REDIRECT_URIS,
            (Secret(seed.PARTNER_APP_SECRET, parse_time(seed.PARTNER_APP_SECRET_EXPIRES)),
             Secret(seed.PARTNER_APP_EXPIRED_SECRET,
                    parse_time(seed.PARTNER_APP_EXPIRED_SECRET_EXPIRES))),
            partner_permissions, {seed.GRAPH_RESOURCE: ("Directory.Read.All",)}),
        App(seed.OPERATOR_APP_ID, seed.OPERATOR_APP_NAME, fabrikam.id, False,
            seed.OPERATOR_REDIRECT_URIS, (Secret(seed.OPERATOR_APP_SECRET, None),),
            {seed.GRAPH_RESOURCE: ("User.Read",)}),
    ]
    # the vendor's own operator app was admin-consented in its home tenant when registered
    grants = [Grant(fabrikam.id, seed.OPERATOR_APP_ID, ALL_PRINCIPALS, seed.GRAPH_RESOURCE,
                    "User.Read")]
    return [contoso, fabrikam], users, apps, grants


def load(state_dir: Path, cpv_client_secret: str) -> Directory:
    """The seeded directory plus whatever `<state-dir>/directory.json` declares."""
    tenants, users, apps, grants = _seeded(cpv_client_secret)
    path = state_dir / DIRECTORY_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DirectoryError(f"{path}: not valid JSON: {exc}") from exc
        _extend(data, tenants, users, apps, path)
    return Directory(tenants, users, apps, _resources(), grants)


def _extend(data, tenants: list, users: list, apps: list, path: Path) -> None:
    if not isinstance(data, dict):
        raise DirectoryError(f"{path}: the top level must be an object")
    unknown = set(data) - {"tenants", "users", "apps"}
    if unknown:
        raise DirectoryError(f"{path}: unknown keys {sorted(unknown)}")
    for item in _list(data, "tenants", path):
        tenants.append(_tenant(item, path))
    by_name = {t.domain.lower(): t for t in tenants} | {t.id.lower(): t for t in tenants}

    def tenant_of(value, where: str) -> Tenant:
        tenant = by_name.get(str(value).lower())
        if tenant is None:
            raise DirectoryError(f"{path}: {where}: unknown tenant {value!r}")
        return tenant

    for item in _list(data, "users", path):
        users.append(_user(item, tenant_of, path))
    for item in _list(data, "apps", path):
        _app(item, apps, tenant_of, path)


def _list(data: dict, key: str, path: Path) -> list[dict]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DirectoryError(f"{path}: '{key}' must be a list of objects")
    return items


def _str(item: dict, key: str, where: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _guid(item: dict, key: str, where: str, default: str | None = None) -> str:
    value = _str(item, key, where, default)
    if not GUID.match(value):
        raise DirectoryError(f"{where}: '{key}' must be a GUID")
    return value.lower()


def _tenant(item: dict, path: Path) -> Tenant:
    where = f"{path}: tenant {item.get('domain', '?')}"
    domain = _str(item, "domain", where).lower()
    groups = item.get("groups", {})
    if not isinstance(groups, dict):
        raise DirectoryError(f"{where}: 'groups' must map group ids to names")
    agents = item.get("admin_agents_group")
    if agents is not None and not (isinstance(agents, str) and GUID.match(agents)):
        raise DirectoryError(f"{where}: 'admin_agents_group' must be a GUID")
    tenant_id = _guid(item, "id", where, str(uuid.uuid5(uuid.NAMESPACE_DNS, domain)))
    if agents:
        groups = {**groups, agents.lower(): "AdminAgents"}
    return Tenant(tenant_id, domain, item.get("name") or domain,
                  agents.lower() if agents else None, groups)


def _user(item: dict, tenant_of, path: Path) -> User:
    where = f"{path}: user {item.get('upn', '?')}"
    upn = _str(item, "upn", where).lower()
    if upn.count("@") != 1:
        raise DirectoryError(f"{where}: 'upn' must look like name@domain")
    tenant = tenant_of(item.get("tenant", upn.split("@")[1]), where)
    roles = []
    for role in item.get("roles", []):
        role_id = ROLE_NAMES.get(role, role)
        if not isinstance(role_id, str) or not GUID.match(role_id):
            raise DirectoryError(f"{where}: role {role!r} is not a known name or a GUID")
        roles.append(role_id.lower())
    groups = [str(g).lower() for g in item.get("groups", [])]
    if item.get("admin_agent"):
        if not tenant.admin_agents_group:
            raise DirectoryError(f"{where}: tenant {tenant.domain} has no admin_agents_group")
        groups.append(tenant.admin_agents_group)
    return User(
        upn=upn,
        tenant_id=tenant.id,
        object_id=_guid(item, "object_id", where,
                        str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{upn}"))),
        name=str(item.get("name") or upn.split("@")[0]),
        password=_str(item, "password", where, seed.PASSWORD),
        roles=tuple(roles),
        groups=tuple(dict.fromkeys(groups)),
        mfa_registered=bool(item.get("mfa", True)),
    )


def _app(item: dict, apps: list, tenant_of, path: Path) -> None:
    where = f"{path}: app {item.get('app_id', '?')}"
    app_id = _guid(item, "app_id", where)
    uris = item.get("redirect_uris", [])
    if not isinstance(uris, list) or not all(isinstance(u, str) and u for u in uris):
        raise DirectoryError(f"{where}: 'redirect_uris' must be a list of URLs")
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise DirectoryError(f"{where}: {uri!r} is not an absolute http(s) URL")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise DirectoryError(f"{where}: http is only allowed for localhost: {uri!r}")
    for index, existing in enumerate(apps):
        if existing.app_id == app_id:  # a seeded app: only more redirect URIs
            extra = tuple(u for u in uris if u not in existing.redirect_uris)
            apps[index] = replace(existing, redirect_uris=existing.redirect_uris + extra)
            return
    secrets_ = []
    for secret in item.get("secrets", []):
        if not isinstance(secret, dict):
            raise DirectoryError(f"{where}: each secret must be an object")
        expires = secret.get("expires")
        secrets_.append(Secret(_str(secret, "value", where),
                               parse_time(expires) if expires else None))
    permissions = item.get("permissions", {seed.PARTNER_CENTER_RESOURCE: ["user_impersonation"]})
    app_roles = item.get("app_roles", {})
    for name, value in (("permissions", permissions), ("app_roles", app_roles)):
        if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
            raise DirectoryError(f"{where}: '{name}' must map resource URIs to lists of names")
    apps.append(App(
        app_id=app_id,
        name=_str(item, "name", where, app_id),
        tenant_id=tenant_of(item.get("tenant", seed.PARTNER_TENANT_DOMAIN), where).id,
        multi_tenant=bool(item.get("multi_tenant", False)),
        redirect_uris=tuple(uris),
        secrets=tuple(secrets_),
        permissions={k.rstrip("/"): tuple(v) for k, v in permissions.items()},
        app_roles={k.rstrip("/"): tuple(v) for k, v in app_roles.items()},
    ))
