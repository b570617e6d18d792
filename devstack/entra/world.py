"""The seeded world (`devstack.seed`) as a directory, plus what `directory.json` adds."""

from __future__ import annotations

import json
from pathlib import Path

from .. import seed
from .directory import (
    ALL_PRINCIPALS,
    App,
    Directory,
    DirectoryError,
    Grant,
    Permission,
    Resource,
    Secret,
    Tenant,
    User,
    parse_time,
)
from .directory_file import extend

DIRECTORY_FILE = "directory.json"


def load(state_dir: Path, cpv_client_secret: str) -> Directory:
    """The seeded directory plus whatever `<state-dir>/directory.json` declares."""
    tenants, users, apps, grants = _seeded(cpv_client_secret)
    path = state_dir / DIRECTORY_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DirectoryError(f"{path}: not valid JSON: {exc}") from exc
        extend(data, tenants, users, apps, path)
    return Directory(tenants, users, apps, _resources(), grants)


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
            {seed.GRAPH_RESOURCE: ("User.Read",)},
            group_claims=True),  # infra/README: groupMembershipClaims=SecurityGroup
    ]
    # the vendor's own operator app was admin-consented in its home tenant when registered
    grants = [Grant(fabrikam.id, seed.OPERATOR_APP_ID, ALL_PRINCIPALS, seed.GRAPH_RESOURCE,
                    "User.Read")]
    return [contoso, fabrikam], users, apps, grants
