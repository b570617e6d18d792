"""`<state-dir>/directory.json`: more tenants, users and apps (schema in the package docstring).

Every entry is validated; a malformed file stops devstack with a message naming the entry.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from .. import seed
from .directory import (
    GUID,
    LOOPBACK_HOSTS,
    ROLE_NAMES,
    App,
    DirectoryError,
    Secret,
    Tenant,
    User,
    parse_time,
)


def extend(data, tenants: list, users: list, apps: list, path: Path) -> None:
    """Add the file's entries to the seeded lists (seeded apps get only redirect URIs)."""
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
        group_claims=bool(item.get("group_claims", False)),
    ))
