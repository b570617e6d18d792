"""The security and deployment properties of infra/, as rules that list what a template breaks.

Each rule takes the parsed templates (`Templates`: path relative to infra/ -> `BicepFile`,
plus the raw text of the few non-Bicep files) and returns a list of problems, empty when the
property holds. Rules find resources by type, not by file, so moving a resource to another
module does not hide it. The tests run every rule on the real templates (no problems) and on
mutated copies (the mutation is reported), which proves each rule can fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.bicep import (
    Arr,
    BicepFile,
    Binary,
    Call,
    For,
    Lambda,
    Member,
    Name,
    Node,
    Obj,
    Resource,
    Str,
    Ternary,
    literal,
    parse,
    to_source,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"
AZURE_YAML = INFRA.parent / "azure.yaml"
FUNCTION_APP = INFRA.parent / "function_app.py"

# The only roles the broker may hand out, by role definition GUID (built-in roles).
ROLES = {
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
}
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_ROLES = {SECRETS_OFFICER, SECRETS_USER}
# Who may be a Secrets Officer: the two app identities and the deployer (module parameters).
OFFICERS = {"functionPrincipalId", "webPrincipalId", "deployerPrincipalId"}

# Settings every app gets (ARCHITECTURE.md, "Settings (contract)").
CONTRACT_SETTINGS = (
    "BROKER_VAULT_URL",
    "BROKER_AUTHORITY_HOST",
    "BROKER_CPV_CLIENT_ID",
    "BROKER_CPV_CLIENT_SECRET",
    "BROKER_PUBLIC_URL",
    "BROKER_PARTNER_CENTER_URL",
    "BROKER_ROTATE_AFTER_DAYS",
    "BROKER_TOKEN_LIFETIME_DAYS",
    "BROKER_ROTATE_SCHEDULE",
    "BROKER_NOTIFY_WEBHOOK_URL",
    "BROKER_SMTP_URL",
    "BROKER_NOTIFY_EMAIL",
    "BROKER_SECRET_KEY",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
)
# Settings whose value must come from the vault, by secret name.
VAULT_SECRETS = {
    "BROKER_CPV_CLIENT_SECRET": "cpv-client-secret",
    "BROKER_SECRET_KEY": "broker-secret-key",
    "BROKER_OPERATOR_CLIENT_SECRET": "operator-client-secret",
    "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET": "operator-client-secret",
}
# what the consent site needs on top (broker/settings.py reads the operator settings)
WEB_SETTINGS = (
    "BROKER_OPERATOR_AUTH",
    "BROKER_OPERATOR_TENANT_ID",
    "BROKER_OPERATOR_CLIENT_ID",
    "BROKER_OPERATOR_CLIENT_SECRET",
    "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET",
)
# the partner admin's pages (invite landing, consent callback and done), health, static files
PUBLIC_PATHS = ("/healthz", "/invite/*", "/consent/callback", "/consent/done")
STARTUP_COMMAND = 'gunicorn --bind=0.0.0.0 --timeout 120 "consent_web:create_app()"'
NEAR_EXPIRY_EVENTS = {"Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"}
OUTPUTS = (
    "AZURE_KEY_VAULT_URL",
    "BROKER_VAULT_URL",
    "CONSENT_SITE_URL",
    "REDIRECT_URI",
    "AZURE_FUNCTION_APP_NAME",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_RESOURCE_GROUP",
)
# checkov checks that stand for a property this repository promises: never skip them.
GUARANTEED_CHECKS = {
    "CKV_AZURE_3": "storage accepts HTTPS only",
    "CKV_AZURE_14": "web apps redirect HTTP to HTTPS",
    "CKV_AZURE_15": "web apps require TLS 1.2",
    "CKV_AZURE_16": "web apps have a managed identity",
    "CKV_AZURE_42": "the vault is recoverable (soft delete)",
    "CKV_AZURE_44": "storage requires TLS 1.2",
    "CKV_AZURE_70": "function apps are HTTPS only",
    "CKV_AZURE_71": "function apps have a managed identity",
    "CKV_AZURE_78": "FTP deployments are disabled",
    "CKV_AZURE_110": "the vault has purge protection",
}


@dataclass
class Templates:
    """The parsed templates of infra/ and the raw text of its other files."""

    bicep: dict[str, BicepFile]
    texts: dict[str, str] = field(default_factory=dict)

    def resources(
        self, type_: str, *, existing: bool = False
    ) -> Iterator[tuple[BicepFile, Resource]]:
        """Declared resources of a type in every file (`existing` references left out)."""
        for file in self.bicep.values():
            for resource in file.resources_of(type_):
                if resource.existing == existing:
                    yield file, resource

    @property
    def main(self) -> BicepFile:
        return self.bicep["main.bicep"]


def load(overrides: dict[str, str] | None = None) -> Templates:
    """Read infra/ (and azure.yaml), with some files' text replaced by `overrides`."""
    overrides = overrides or {}
    texts: dict[str, str] = {}
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in (".bicep", ".json"):
            texts[path.relative_to(INFRA).as_posix()] = path.read_text(encoding="utf-8")
    texts["../azure.yaml"] = AZURE_YAML.read_text(encoding="utf-8")
    if FUNCTION_APP.exists():
        texts["../function_app.py"] = FUNCTION_APP.read_text(encoding="utf-8")
    texts.update(overrides)
    bicep = {
        name: parse(text, INFRA / name) for name, text in texts.items() if name.endswith(".bicep")
    }
    return Templates(bicep, texts)


# ---------------------------------------------------------------------------------------------
# helpers


def _lit(file: BicepFile, node: Node | None, default: object = None):
    return literal(node, file, default=default)


def _names(node: Node | None) -> set[str]:
    """Every name an expression mentions."""
    return {n.id for n in node.walk() if isinstance(n, Name)} if node is not None else set()


def _children(file: BicepFile, parent: Resource, type_: str) -> list[Resource]:
    return [r for r in file.resources_of(type_) if r.parent == parent.symbol]


def _is_true(file: BicepFile, node: Node | None) -> bool:
    return _lit(file, node) is True


def app_settings(file: BicepFile, site: Resource) -> dict[str, Node]:
    """A site's app settings, from `siteConfig.appSettings` or from a `config/appsettings` child.

    `siteConfig.appSettings` may be a literal array of {name, value} or the usual
    `[for setting in items(<object>): {name: setting.key, value: setting.value}]`.
    """
    settings: dict[str, Node] = {}
    node = file.resolve(site.get("properties.siteConfig.appSettings"))
    if isinstance(node, For) and isinstance(node.iterable, Call) and node.iterable.name == "items":
        source = file.resolve(node.iterable.args[0])
        if isinstance(source, Obj):
            settings.update(source.items)
    elif isinstance(node, Arr):
        for item in node.items:
            if isinstance(item, Obj) and isinstance(item.items.get("name"), Str):
                settings[_lit(file, item.items["name"])] = item.items.get("value")
    for config in _children(file, site, "Microsoft.Web/sites/config"):
        if _lit(file, config.get("name")) == "appsettings":
            source = file.resolve(config.get("properties"))
            if isinstance(source, Obj):
                settings.update(source.items)
    return settings


def _vault_reference(node: Node | None) -> str | None:
    """The secret name of `@Microsoft.KeyVault(SecretUri=<vault>secrets/<name>)`, or None."""
    if not isinstance(node, Str) or not node.parts:
        return None
    first, last = node.parts[0], node.parts[-1]
    if not (isinstance(first, str) and first.startswith("@Microsoft.KeyVault(SecretUri=")):
        return None
    match = re.fullmatch(r"secrets/([A-Za-z0-9-]+)\)", last) if isinstance(last, str) else None
    return match.group(1) if match else None


def role_guid(file: BicepFile, node: Node | None) -> str | None:
    """The role definition GUID of a roleDefinitionId expression, following variables."""
    node = file.resolve(node)
    if isinstance(node, Call) and node.name in (
        "subscriptionResourceId",
        "resourceId",
        "tenantResourceId",
    ):
        args = [_lit(file, a) for a in node.args]
        if len(args) >= 2 and args[-2] == "Microsoft.Authorization/roleDefinitions":
            return args[-1]
    text = _lit(file, node)
    if isinstance(text, str):
        match = re.search(r"roleDefinitions/([0-9a-fA-F-]{36})$", text) or re.fullmatch(
            r"([0-9a-fA-F-]{36})", text
        )
        return match.group(1).lower() if match else None
    return None


def _service_tag(file: BicepFile, site: Resource) -> str | None:
    """The azd-service-name tag of a site, in `tags: {...}` or `tags: union(tags, {...})`."""
    tags = file.resolve(site.get("tags"))
    parts = tags.args if isinstance(tags, Call) and tags.name == "union" else (tags,)
    for part in parts:
        part = file.resolve(part)
        if isinstance(part, Obj) and "azd-service-name" in part.items:
            return _lit(file, part.items["azd-service-name"])
    return None


def _site_kind(file: BicepFile, site: Resource) -> str:
    return str(_lit(file, site.get("kind"), default=""))


def _function_sites(t: Templates) -> list[tuple[BicepFile, Resource]]:
    return [
        (f, s) for f, s in t.resources("Microsoft.Web/sites") if "functionapp" in _site_kind(f, s)
    ]


def _web_sites(t: Templates) -> list[tuple[BicepFile, Resource]]:
    return [
        (f, s)
        for f, s in t.resources("Microsoft.Web/sites")
        if "functionapp" not in _site_kind(f, s)
    ]


# ---------------------------------------------------------------------------------------------
# rules


def key_vault_problems(t: Templates) -> list[str]:
    """RBAC only, soft delete 90 days, purge protection, public access a parameter, audit logs."""
    problems = []
    vaults = list(t.resources("Microsoft.KeyVault/vaults"))
    if len(vaults) != 1:
        return [f"expected one Key Vault, found {len(vaults)}"]
    file, vault = vaults[0]
    if not _is_true(file, vault.get("properties.enableRbacAuthorization")):
        problems.append("the vault does not use RBAC authorization (enableRbacAuthorization)")
    policies = vault.get("properties.accessPolicies")
    if policies is not None and _lit(file, policies, default=["?"]) != []:
        problems.append("the vault has access policies; access is RBAC only")
    if not _is_true(file, vault.get("properties.enableSoftDelete")):
        problems.append("soft delete is not enabled (enableSoftDelete)")
    if _lit(file, vault.get("properties.softDeleteRetentionInDays")) != 90:
        problems.append("soft delete retention is not 90 days")
    if not _is_true(file, vault.get("properties.enablePurgeProtection")):
        problems.append("purge protection is not enabled (enablePurgeProtection)")
    access = vault.get("properties.publicNetworkAccess")
    if not (isinstance(access, Name) and access.id in file.params):
        problems.append("public network access is not set from a parameter")
    audited = False
    for diag_file, diag in t.resources("Microsoft.Insights/diagnosticSettings"):
        scope = diag.get("scope")
        if diag_file is not file or not (isinstance(scope, Name) and scope.id == vault.symbol):
            continue
        logs = _lit(diag_file, diag.get("properties.logs"), default=[])
        audited = audited or (
            diag.get("properties.workspaceId") is not None
            and any(
                log.get("category") == "AuditEvent" and log.get("enabled") is True for log in logs
            )
        )
    if not audited:
        problems.append("the vault's AuditEvent log is not sent to Log Analytics")
    return problems


def private_endpoint_problems(t: Templates) -> list[str]:
    """The optional private endpoint: vault group, privatelink zone linked to the VNet."""
    problems = []
    endpoints = list(t.resources("Microsoft.Network/privateEndpoints"))
    groups = []
    for f, pe in endpoints:
        connections = f.resolve(pe.get("properties.privateLinkServiceConnections"))
        for c in connections.items if isinstance(connections, Arr) else ():
            if isinstance(c, Obj):
                groups.append(_lit(f, c.get("properties.groupIds"), default=[]))
    if ["vault"] not in groups:
        problems.append("no private endpoint for the vault (groupIds ['vault'])")
    zones = [
        _lit(f, z.get("name"), default="")
        for f, z in t.resources("Microsoft.Network/privateDnsZones")
    ]
    if "privatelink.vaultcore.azure.net" not in zones:
        problems.append("no private DNS zone privatelink.vaultcore.azure.net")
    if not list(t.resources("Microsoft.Network/privateDnsZones/virtualNetworkLinks")):
        problems.append("the private DNS zone is not linked to the VNet")
    network = [m for m in t.main.modules if m.path.endswith("network.bicep")]
    if not network or _names(network[0].condition) != {"usePrivateEndpoint"}:
        problems.append("the network module is not conditional on usePrivateEndpoint")
    if (
        "usePrivateEndpoint" in t.main.params
        and _lit(t.main, t.main.params["usePrivateEndpoint"].default) is not False
    ):
        problems.append("usePrivateEndpoint does not default to false")
    return problems


def site_problems(t: Templates) -> list[str]:
    """Both sites: HTTPS only, TLS 1.2, no FTP, a system-assigned identity, no basic auth."""
    problems = []
    sites = list(t.resources("Microsoft.Web/sites"))
    if len(_function_sites(t)) != 1 or len(_web_sites(t)) != 1:
        problems.append(f"expected one function app and one web app, found {len(sites)} sites")
    for file, site in sites:
        who = f"site {site.symbol}"
        if not _is_true(file, site.get("properties.httpsOnly")):
            problems.append(f"{who} is not httpsOnly")
        if _lit(file, site.get("properties.siteConfig.minTlsVersion")) != "1.2":
            problems.append(f"{who} does not require TLS 1.2 (minTlsVersion)")
        if _lit(file, site.get("properties.siteConfig.ftpsState")) != "Disabled":
            problems.append(f"{who} does not disable FTP (ftpsState)")
        if _lit(file, site.get("identity.type")) != "SystemAssigned":
            problems.append(f"{who} has no system-assigned identity")
        policies = {
            _lit(file, p.get("name")): _lit(file, p.get("properties.allow"), default=None)
            for p in _children(file, site, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
        }
        for kind in ("ftp", "scm"):
            if policies.get(kind) is not False:
                problems.append(f"{who} allows basic {kind} publishing credentials")
    return problems


def _settings_problems(file: BicepFile, site: Resource, required: tuple[str, ...]) -> list[str]:
    problems = []
    who = f"site {site.symbol}"
    settings = app_settings(file, site)
    for name in required:
        if name not in settings:
            problems.append(f"{who} lacks the app setting {name}")
    for name, secret in VAULT_SECRETS.items():
        if name in settings and _vault_reference(settings[name]) != secret:
            problems.append(f"{who}: {name} is not a Key Vault reference to the secret {secret}")
    if "AzureWebJobsStorage" in settings:
        problems.append(f"{who} has a storage connection string (AzureWebJobsStorage)")
    if _lit(file, settings.get("AzureWebJobsStorage__credential"), default="") != "managedidentity":
        problems.append(f"{who} does not reach storage with its managed identity")
    return problems


def function_app_problems(t: Templates) -> list[str]:
    """Flex Consumption FC1, Python 3.11, identity-based storage and deployment, every setting."""
    problems = []
    for file, site in _function_sites(t):
        plans = {p.symbol: p for p in file.resources_of("Microsoft.Web/serverfarms")}
        plan = plans.get(next(iter(_names(site.get("properties.serverFarmId"))), ""))
        if plan is None or _lit(file, plan.get("sku.name")) != "FC1":
            problems.append("the function app is not on a Flex Consumption (FC1) plan")
        config = "properties.functionAppConfig."
        if _lit(file, site.get(config + "runtime"), default={}) != {
            "name": "python",
            "version": "3.11",
        }:
            problems.append("the function app does not run Python 3.11")
        if _lit(file, site.get(config + "deployment.storage.authentication.type")) != (
            "SystemAssignedIdentity"
        ):
            problems.append("the deployment container is not reached with the app's identity")
        problems += _settings_problems(file, site, CONTRACT_SETTINGS)
        settings = app_settings(file, site)
        for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"):
            if name in settings:
                problems.append(f"the function app sets {name}, which Flex Consumption rejects")
    return problems


def web_app_problems(t: Templates) -> list[str]:
    """Linux Python 3.11 with the gunicorn startup command, build on deploy, every setting."""
    problems = []
    for file, site in _web_sites(t):
        if _lit(file, site.get("properties.siteConfig.linuxFxVersion")) != "PYTHON|3.11":
            problems.append("the web app does not run Python 3.11 on Linux")
        if _lit(file, site.get("properties.siteConfig.appCommandLine")) != STARTUP_COMMAND:
            problems.append("the web app's startup command is not the gunicorn app factory")
        problems += _settings_problems(file, site, (*CONTRACT_SETTINGS, *WEB_SETTINGS))
        settings = app_settings(file, site)
        if _lit(file, settings.get("SCM_DO_BUILD_DURING_DEPLOYMENT"), default="") != "true":
            problems.append(
                "the web app does not build on deployment (SCM_DO_BUILD_DURING_DEPLOYMENT)"
            )
        sku = t.main.params.get("webPlanSku")
        if sku is None or _lit(t.main, sku.default) != "B1":
            problems.append("the web plan SKU is not a parameter defaulting to B1")
        auth = t.main.params.get("operatorAuth")
        if auth is None or _lit(t.main, auth.default) != "easyauth":
            problems.append("operatorAuth does not default to easyauth")
    return problems


def easy_auth_problems(t: Templates) -> list[str]:
    """App Service Authentication in easyauth mode: sign-in required except for public paths."""
    problems = []
    for file, site in _web_sites(t):
        configs = [
            c
            for c in _children(file, site, "Microsoft.Web/sites/config")
            if _lit(file, c.get("name")) == "authsettingsV2"
        ]
        if len(configs) != 1:
            problems.append("the web app has no authsettingsV2")
            continue
        auth = configs[0]
        condition = file.resolve(auth.condition) if auth.condition is not None else None
        if not (
            isinstance(condition, Binary)
            and condition.op == "=="
            and {_lit(file, condition.left, ""), _lit(file, condition.right, "")} >= {"easyauth"}
        ):
            problems.append("authsettingsV2 is not deployed exactly when operatorAuth is easyauth")
        if not _is_true(file, auth.get("properties.platform.enabled")):
            problems.append("App Service Authentication is not enabled (platform.enabled)")
        validation = "properties.globalValidation."
        if not _is_true(file, auth.get(validation + "requireAuthentication")):
            problems.append("authentication is not required (requireAuthentication)")
        action = auth.get(validation + "unauthenticatedClientAction")
        actions = (
            {_lit(file, action.then, ""), _lit(file, action.otherwise, "")}
            if isinstance(action, Ternary)
            else {_lit(file, action, "")}
        )
        if "RedirectToLoginPage" not in actions or not actions <= {
            "RedirectToLoginPage",
            "Return401",
            "Return403",
        }:
            problems.append("unauthenticated operators are not redirected to login (or let in)")
        excluded = auth.get(validation + "excludedPaths")
        defaults = []
        if isinstance(excluded, Name) and excluded.id in file.params:
            defaults.append(_lit(file, file.params[excluded.id].default, default=[]))
            main_param = t.main.params.get(excluded.id)
            defaults.append(_lit(t.main, main_param.default, default=[]) if main_param else [])
        else:
            defaults.append(_lit(file, excluded, default=[]))
        for paths in defaults:
            missing = [p for p in PUBLIC_PATHS if p not in paths]
            if missing:
                problems.append(f"paths that must stay public are not excluded: {missing}")
        aad = "properties.identityProviders.azureActiveDirectory.registration."
        if not _names(auth.get(aad + "clientId")) & set(file.params):
            problems.append("the operator client id is not a parameter")
        if not _names(auth.get(aad + "openIdIssuer")) & set(file.params):
            problems.append("the operator tenant is not a parameter of the issuer")
    return problems


def storage_problems(t: Templates) -> list[str]:
    """No shared keys, TLS 1.2, no public blobs, HTTPS only, the lease container and queues."""
    problems = []
    accounts = list(t.resources("Microsoft.Storage/storageAccounts"))
    if len(accounts) != 1:
        return [f"expected one storage account, found {len(accounts)}"]
    file, account = accounts[0]
    expected = {
        "allowSharedKeyAccess": False,
        "minimumTlsVersion": "TLS1_2",
        "allowBlobPublicAccess": False,
        "supportsHttpsTrafficOnly": True,
    }
    for key, value in expected.items():
        if _lit(file, account.get(f"properties.{key}"), default=None) != value:
            problems.append(f"storage {key} is not {value!r}")
    containers = {
        _lit(f, c.get("name"), "")
        for f, c in t.resources("Microsoft.Storage/storageAccounts/blobServices/containers")
    }
    queues = {
        _lit(f, q.get("name"), "")
        for f, q in t.resources("Microsoft.Storage/storageAccounts/queueServices/queues")
    }
    if "broker-leases" not in containers:
        problems.append("no blob container broker-leases")
    for queue in ("rotations", "rotations-poison"):
        if queue not in queues:
            problems.append(f"no queue {queue}")
    return problems


def role_problems(t: Templates) -> list[str]:
    """Least privilege: only the allowed roles, on narrow scopes, to the right principals."""
    problems = []
    used: set[str] = set()
    assignments = list(t.resources("Microsoft.Authorization/roleAssignments"))
    if not assignments:
        return ["no role assignments"]
    for file, ra in assignments:
        who = f"role assignment {ra.symbol}"
        role_node = ra.get("properties.roleDefinitionId")
        guid = role_guid(file, role_node)
        if guid not in ROLES:
            problems.append(f"{who} grants a role outside the allowed set: {guid}")
            continue
        used.add(guid)
        scope = ra.get("scope")
        scoped = (
            file.resource(scope.id)
            if isinstance(scope, Name) and any(r.symbol == scope.id for r in file.resources)
            else None
        )
        wanted = "Microsoft.KeyVault/vaults" if guid in KEY_VAULT_ROLES else "Microsoft.Storage/"
        if scoped is None or not scoped.type.startswith(wanted):
            problems.append(f"{who} is not scoped to the vault or storage resource it is for")
        principal = ra.get("properties.principalId")
        name = ra.get("name")
        if not (
            isinstance(name, Call)
            and name.name == "guid"
            and len(name.args) == 3
            and name.args[1] == principal
            and role_guid(file, name.args[2]) == guid
        ):
            problems.append(f"{who} is not named guid(scope, principalId, roleDefinitionId)")
        consumer = ra.loop is not None and "consumerPrincipalIds" in _names(ra.loop.iterable)
        consumer = consumer or "consumerPrincipalIds" in _names(principal)
        if consumer and guid != SECRETS_USER:
            problems.append(f"{who} gives consumers more than Key Vault Secrets User")
        if guid == SECRETS_USER and not consumer:
            problems.append(f"{who} gives Key Vault Secrets User to someone other than consumers")
        if guid == SECRETS_OFFICER and not _names(principal) <= OFFICERS:
            problems.append(f"{who} makes {sorted(_names(principal))} a Secrets Officer")
        if "deployerPrincipalId" in _names(principal) and "deployerPrincipalId" not in _names(
            ra.condition
        ):
            problems.append(f"{who} is not conditional on a deployer being given")
    missing = set(ROLES) - used
    if missing:
        problems.append(f"roles never assigned: {sorted(ROLES[g] for g in missing)}")
    return problems + _role_comment_problems(t)


def _role_comment_problems(t: Templates) -> list[str]:
    """Each role definition variable sits under a comment naming the role it grants."""
    problems = []
    for name, file in t.bicep.items():
        lines = t.texts[name].splitlines()
        for var in file.vars.values():
            guid = role_guid(file, var.value)
            if guid is None:
                continue
            comment = lines[var.line - 2].strip() if var.line >= 2 else ""
            if comment != f"// {ROLES.get(guid, '?')}":
                problems.append(f"{name}: var {var.name} ({guid}) is not under '// <role name>'")
    return problems


def event_grid_problems(t: Templates) -> list[str]:
    """A system topic on the vault; near-expiry and expired events of rt-* to the function."""
    problems = []
    topics = list(t.resources("Microsoft.EventGrid/systemTopics"))
    if len(topics) != 1:
        return [f"expected one Event Grid system topic, found {len(topics)}"]
    file, topic = topics[0]
    if _lit(file, topic.get("properties.topicType")) != "Microsoft.KeyVault.vaults":
        problems.append("the system topic is not a Key Vault topic")
    source = topic.get("properties.source")
    source_resource = next(
        (r for r in file.resources if isinstance(source, Member) and _names(source) == {r.symbol}),
        None,
    )
    if source_resource is None or source_resource.type != "Microsoft.KeyVault/vaults":
        problems.append("the system topic's source is not the vault")
    subscriptions = _children(file, topic, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    if len(subscriptions) != 1:
        return [*problems, f"expected one event subscription, found {len(subscriptions)}"]
    sub = subscriptions[0]
    if set(_lit(file, sub.get("properties.filter.includedEventTypes"), default=[])) != (
        NEAR_EXPIRY_EVENTS
    ):
        problems.append("the subscription does not take exactly SecretNearExpiry and SecretExpired")
    if _lit(file, sub.get("properties.filter.subjectBeginsWith"), default="") != "rt-":
        problems.append("the subscription is not filtered to rt-* secrets")
    if _lit(file, sub.get("properties.destination.endpointType"), default="") != "AzureFunction":
        problems.append("events are not delivered to an Azure Function")
    target = sub.get("properties.destination.properties.resourceId")
    last = target.parts[-1] if isinstance(target, Str) and target.parts else None
    if last != "/functions/secret_near_expiry":
        problems.append("events are not delivered to the function secret_near_expiry")
    if not (isinstance(sub.condition, Name) and sub.condition.id in file.params):
        problems.append("the event subscription is not behind a parameter")
    flag = t.main.params.get("deployEventSubscription")
    if flag is None or _lit(t.main, flag.default) is not False:
        problems.append("deployEventSubscription does not default to false (first azd up)")
    return problems


def output_problems(t: Templates) -> list[str]:
    """The outputs azd and the README rely on, UPPER_SNAKE, and the redirect URI's path."""
    problems = [
        f"main.bicep has no output {name}" for name in OUTPUTS if name not in t.main.outputs
    ]
    for name in t.main.outputs:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            problems.append(f"output {name} is not UPPER_SNAKE")
    redirect = t.main.outputs.get("REDIRECT_URI")
    tail = redirect.value.parts[-1] if redirect and isinstance(redirect.value, Str) else None
    if tail != "/consent/callback":
        problems.append("REDIRECT_URI is not <site>/consent/callback")
    return problems


def template_problems(t: Templates) -> list[str]:
    """azd conventions: subscription scope, resource token, tags, overridable names, parameters."""
    problems = []
    main = t.main
    if main.target_scope != "subscription":
        problems.append("main.bicep is not deployed at subscription scope")
    token = main.vars.get("resourceToken")
    expected = "toLower(uniqueString(subscription().id, environmentName, location))"
    if token is None or to_source(token.value) != expected:
        problems.append(f"resourceToken is not {expected}")
    tags = main.resolve(Name("tags"))
    if not (
        isinstance(tags, Obj) and to_source(tags.items.get("azd-env-name")) == "environmentName"
    ):
        problems.append("the tags do not carry azd-env-name: environmentName")
    for name, file in t.bicep.items():
        for resource in file.resources:
            if (
                not resource.existing
                and "location" in resource.body.items
                and "tags" not in resource.body.items
            ):
                problems.append(f"{name}: {resource.symbol} is not tagged")
    for module in main.modules:
        params = module.get("params")
        if (
            isinstance(params, Obj)
            and "tags" in params.items
            and _names(params.items["tags"]) != {"tags"}
        ):
            problems.append(f"module {module.symbol} does not get the common tags")
    for param in main.params.values():
        derived = param.name.endswith("Name") and param.name != "environmentName"
        if derived and _lit(main, param.default, default=None) != "":
            problems.append(f"name parameter {param.name} does not default to '' (derived)")
    try:
        parameters = json.loads(t.texts["main.parameters.json"])["parameters"]
    except (KeyError, ValueError):
        return [*problems, "main.parameters.json is missing or not JSON"]
    for key in parameters:
        if key not in main.params:
            problems.append(f"main.parameters.json sets {key}, which main.bicep does not declare")
    if parameters.get("environmentName", {}).get("value") != "${AZURE_ENV_NAME}":
        problems.append("environmentName is not ${AZURE_ENV_NAME}")
    if parameters.get("location", {}).get("value") != "${AZURE_LOCATION}":
        problems.append("location is not ${AZURE_LOCATION}")
    yaml = t.texts.get("../azure.yaml", "")
    for service, host in (("functions", "function"), ("web", "appservice")):
        block = re.search(rf"^  {service}:\n((?:    .*\n)+)", yaml, flags=re.M)
        body = block.group(1) if block else ""
        for line in ("project: .", "language: python", f"host: {host}"):
            if f"    {line}\n" not in body:
                problems.append(f"azure.yaml service {service} lacks '{line}'")
    services = {_service_tag(f, site) for f, site in t.resources("Microsoft.Web/sites")}
    if services != {"functions", "web"}:
        problems.append("the sites are not tagged azd-service-name functions and web")
    return problems


def checkov_skip_problems(t: Templates) -> list[str]:
    """Every inline checkov skip gives a reason, and none skips a promised property."""
    problems = []
    for name, text in t.texts.items():
        for match in re.finditer(r"#checkov:skip=(\w+)(:?\s*(.*))", text):
            check, reason = match.group(1), match.group(3).strip()
            if len(reason) < 20:
                problems.append(f"{name}: skip of {check} gives no reason")
            if check in GUARANTEED_CHECKS:
                problems.append(f"{name}: {check} is skipped, but {GUARANTEED_CHECKS[check]}")
    return problems


def function_binding_problems(t: Templates) -> list[str]:
    """What function_app.py binds to exists: its %SETTINGS%, its queues, the Event Grid target."""
    code = t.texts.get("../function_app.py")
    if code is None:
        return []
    problems = []
    sites = _function_sites(t)
    settings = app_settings(*sites[0]) if sites else {}
    for name in sorted(set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", code))):
        if name not in settings:
            problems.append(f"function_app.py reads %{name}%, which the function app does not set")
    queues = {
        _lit(f, q.get("name"), "")
        for f, q in t.resources("Microsoft.Storage/storageAccounts/queueServices/queues")
    }
    constants = dict(re.findall(r"^([A-Z_]+)\s*=\s*\"([a-z0-9-]+)\"", code, flags=re.M))
    for ref in re.findall(r"queue_name\s*=\s*(\"[a-z0-9-]+\"|[A-Z_]+)", code):
        queue = ref.strip('"') if ref.startswith('"') else constants.get(ref, ref)
        if queue not in queues:
            problems.append(f"function_app.py listens on queue {queue}, which is not created")
    functions = set(re.findall(r"@app\.event_grid_trigger\([^)]*\)\s*\ndef\s+(\w+)", code))
    for _, sub in t.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions"):
        target = sub.get("properties.destination.properties.resourceId")
        last = target.parts[-1] if isinstance(target, Str) and target.parts else ""
        name = last.rsplit("/", 1)[-1] if isinstance(last, str) else ""
        if name not in functions:
            problems.append(f"Event Grid delivers to {name}, not an Event Grid function")
    return problems


def module_problems(t: Templates) -> list[str]:
    """What a compiler would refuse between files: module paths, parameters and outputs."""
    problems = []
    for name, file in t.bicep.items():
        folder = Path(name).parent
        nodes = [v.value for v in file.vars.values()] + [o.value for o in file.outputs.values()]
        nodes += [r.body for r in file.resources] + [m.body for m in file.modules]
        for module in file.modules:
            target = t.bicep.get((folder / module.path).as_posix())
            if target is None:
                problems.append(f"{name}: module {module.symbol} points at missing {module.path}")
                continue
            params = module.get("params")
            given = set(params.items) if isinstance(params, Obj) else set()
            for unknown in sorted(given - set(target.params)):
                problems.append(f"{name}: module {module.symbol} passes unknown param {unknown}")
            required = {p.name for p in target.params.values() if p.default is None}
            for missing in sorted(required - given):
                problems.append(f"{name}: module {module.symbol} lacks required param {missing}")
            for node in (n for root in nodes for n in root.walk()):
                if (
                    isinstance(node, Member)
                    and isinstance(node.obj, Member)
                    and node.obj.name == "outputs"
                    and node.obj.obj == Name(module.symbol)
                    and node.name not in target.outputs
                ):
                    problems.append(f"{name}: {module.symbol}.outputs.{node.name} does not exist")
    return problems


def undeclared_name_problems(t: Templates) -> list[str]:
    """Every name an expression uses is declared (a typo would only surface at `azd up`)."""
    problems = []
    for name, file in t.bicep.items():
        roots: list[Node] = [v.value for v in file.vars.values()]
        roots += [o.value for o in file.outputs.values()]
        roots += [p.default for p in file.params.values() if p.default is not None]
        for decl in [*file.resources, *file.modules]:
            roots.append(decl.body)
            roots += [n for n in (decl.condition, decl.loop) if n is not None]
        declared = set(file.params) | set(file.vars)
        declared |= {r.symbol for r in file.resources} | {m.symbol for m in file.modules}
        for root in roots:
            for node in root.walk():
                if isinstance(node, For):
                    declared |= set(node.targets)
                elif isinstance(node, Lambda):
                    declared |= set(node.params)
        functions = {id(n.func) for root in roots for n in root.walk() if isinstance(n, Call)}
        for root in roots:
            for node in root.walk():
                called = id(node) in functions
                if isinstance(node, Name) and not called and node.id not in declared:
                    problems.append(f"{name}: {node.id} is not declared")
    return sorted(set(problems))


RULES: dict[str, Callable[[Templates], list[str]]] = {
    "key_vault": key_vault_problems,
    "private_endpoint": private_endpoint_problems,
    "sites": site_problems,
    "function_app": function_app_problems,
    "web_app": web_app_problems,
    "easy_auth": easy_auth_problems,
    "storage": storage_problems,
    "roles": role_problems,
    "event_grid": event_grid_problems,
    "outputs": output_problems,
    "template": template_problems,
    "checkov_skips": checkov_skip_problems,
    "function_bindings": function_binding_problems,
    "modules": module_problems,
    "names": undeclared_name_problems,
}
