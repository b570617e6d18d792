"""The security and deployment properties of infra/, as rules that list what a template breaks.

Each rule takes the parsed templates (`Templates`: path relative to infra/ -> `BicepFile`,
plus the raw text of the few non-Bicep files) and returns a list of problems, empty when the
property holds. Rules find resources by type, not by file, so moving a resource to another
module does not hide it. The tests run every rule on the real templates (no problems) and on
mutated copies (the mutation is reported), which proves each rule can fail.
"""

from __future__ import annotations

import fnmatch
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
ROOT = INFRA.parent
# files outside infra/ that the rules read too, by their path relative to infra/
OUTSIDE = ("../azure.yaml", "../function_app.py", "../requirements.txt", "../.funcignore",
           "../.webappignore")

# The only roles the broker may hand out, by role definition GUID (built-in roles).
ROLES = {
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Every role assignment the templates may make, and each one they must make: (whose principal,
# role, scope). The function identity and the web app do their jobs and nothing more; the
# deployer (an operator) manages both vaults; consumers get nothing from the template (an
# operator grants each one Key Vault Secrets User on single secrets, infra/README.md).
EXPECTED_ROLES = {
    ("function identity", "Key Vault Secrets Officer", "token vault"),
    ("function identity", "Key Vault Secrets User", "config vault"),
    ("function identity", "Storage Blob Data Owner", "storage account"),
    ("function identity", "Storage Queue Data Contributor", "storage account"),
    ("function identity", "Monitoring Metrics Publisher", "Application Insights"),
    ("web app", "Key Vault Secrets Officer", "token vault"),
    ("web app", "Key Vault Secrets User", "config vault"),
    ("web app", "Storage Blob Data Contributor", "broker-leases container"),
    ("web app", "Monitoring Metrics Publisher", "Application Insights"),
    ("deployer", "Key Vault Secrets Officer", "token vault"),
    ("deployer", "Key Vault Secrets Officer", "config vault"),
}

# Settings every app gets (ARCHITECTURE.md, "Settings (contract)", and the config vault).
CONTRACT_SETTINGS = (
    "BROKER_VAULT_URL",
    "BROKER_CONFIG_VAULT_URL",
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
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
)
# Settings whose value must come from the config vault, by secret name.
VAULT_SECRETS = {
    "BROKER_CPV_CLIENT_SECRET": "cpv-client-secret",
    "BROKER_SECRET_KEY": "broker-secret-key",
    "BROKER_OPERATOR_CLIENT_SECRET": "operator-client-secret",
    "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET": "operator-client-secret",
}
# the vault URL settings and the vault each must name
VAULT_URL_SETTINGS = {"BROKER_VAULT_URL": "token vault", "BROKER_CONFIG_VAULT_URL": "config vault"}
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
STARTUP_COMMAND = (
    'gunicorn --bind=0.0.0.0 --timeout 120 --workers 2 --threads 4 "consent_web:create_app()"'
)
NEAR_EXPIRY_EVENTS = {"Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"}
# secrets whose expiry events each vault's subscription must deliver (Key Vault's event subject
# is the secret's name)
WATCHED_SECRETS = {
    "token vault": ("rt-contoso", "cs-contoso"),
    "config vault": ("cpv-client-secret", "operator-client-secret"),
}
OUTPUTS = (
    "AZURE_KEY_VAULT_URL",
    "AZURE_KEY_VAULT_ID",
    "BROKER_VAULT_URL",
    "BROKER_CONFIG_VAULT_URL",
    "AZURE_CONFIG_VAULT_NAME",
    "CONSENT_SITE_URL",
    "REDIRECT_URI",
    "AZURE_FUNCTION_APP_NAME",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_RESOURCE_GROUP",
)
# azd turns `${VAR}` text into an array or object parameter only from this release on
AZD_ARRAY_PARAMETERS = (1, 23, 4)
# the azd hooks the deployment relies on, and what each script must handle
HOOKS = {
    "preprovision": ("Microsoft.App", "list-deleted", "RECOVER_KEY_VAULTS",
                     "DEPLOY_EVENT_SUBSCRIPTION"),
    "postprovision": ("RECOVER_KEY_VAULTS",),
    "postdown": ("DEPLOY_EVENT_SUBSCRIPTION",),
}
# what azd must never upload: the virtual environment `azd restore` creates for a Python service
# (<project folder>_env) and local settings that may hold development secrets
NOT_UPLOADED = ("partner-token-broker_env", "wt-infra_env", ".env", ".venv", "local.settings.json")
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
    """Read infra/ (and the files of OUTSIDE), with some files' text replaced by `overrides`."""
    overrides = overrides or {}
    texts: dict[str, str] = {}
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in (".bicep", ".json", ".md"):
            texts[path.relative_to(INFRA).as_posix()] = path.read_text(encoding="utf-8")
    for hook in sorted((INFRA / "hooks").glob("*.sh")):
        texts[hook.relative_to(INFRA).as_posix()] = hook.read_text(encoding="utf-8")
    for name in OUTSIDE:
        if (INFRA / name).exists():
            texts[name] = (INFRA / name).read_text(encoding="utf-8")
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


def _output_of(node: Node | None) -> tuple[str, str] | None:
    """`<module>.outputs.<name>` as (module symbol, output name), else None."""
    if (
        isinstance(node, Member)
        and isinstance(node.obj, Member)
        and node.obj.name == "outputs"
        and isinstance(node.obj.obj, Name)
    ):
        return node.obj.obj.id, node.name
    return None


def _modules_of(t: Templates, path: str):
    """The modules of main.bicep that deploy `path` (relative to infra/)."""
    return [m for m in t.main.modules if m.path == path]


def _arg(module, param: str) -> Node | None:
    """What a module call passes for one parameter, or None."""
    params = module.get("params")
    return params.items.get(param) if isinstance(params, Obj) else None


def vault_modules(t: Templates) -> dict[str, str]:
    """Which keyvault.bicep module of main.bicep is which vault: symbol -> 'token vault' or
    'config vault', told apart by the output (BROKER_VAULT_URL, BROKER_CONFIG_VAULT_URL) that
    publishes its URI."""
    roles = {}
    for output, vault in VAULT_URL_SETTINGS.items():
        source = _output_of(t.main.outputs[output].value) if output in t.main.outputs else None
        if source is not None:
            roles[source[0]] = vault
    return {m.symbol: roles.get(m.symbol, "?") for m in _modules_of(t, "modules/keyvault.bicep")}


def _fed_vault(t: Templates, module_path: str, param: str) -> set[str]:
    """The vaults ('token vault', 'config vault') main.bicep feeds into `param` of the module(s)
    deploying `module_path`, through `<vault module>.outputs.<x>`."""
    vaults = vault_modules(t)
    found = set()
    for module in _modules_of(t, module_path):
        source = _output_of(_arg(module, param))
        found.add(vaults.get(source[0], "?") if source else "?")
    return found


def _param_source(t: Templates, module_path: str, param: str) -> str:
    """What feeds a parameter of a module, in words: 'token vault', 'config vault', 'function
    identity', 'web app', 'deployer', or the Bicep source."""
    modules = _modules_of(t, module_path)
    if not modules:
        return "?"
    node = _arg(modules[0], param)
    source = _output_of(node)
    if source is not None:
        vaults = vault_modules(t)
        if source[0] in vaults:
            return vaults[source[0]]
        fed = next((m for m in t.main.modules if m.symbol == source[0]), None)
        if fed is not None and fed.path == "modules/identity.bicep":
            return "function identity"
        if fed is not None and fed.path == "modules/webapp.bicep":
            return "web app"
    if "deployerPrincipalId" in _names(node):
        return "deployer"
    return to_source(node)


# ---------------------------------------------------------------------------------------------
# rules


def vault_split_problems(t: Templates) -> list[str]:
    """Two vaults from one module: the token vault and the config vault, alike in everything
    that protects them (network, audit), told apart only by name and by what is stored where."""
    problems = []
    vaults = vault_modules(t)
    if sorted(vaults.values()) != ["config vault", "token vault"]:
        return [
            "main.bicep does not deploy exactly two vaults, one published as BROKER_VAULT_URL "
            f"(the token vault) and one as BROKER_CONFIG_VAULT_URL (the config vault): {vaults}"
        ]
    modules = _modules_of(t, "modules/keyvault.bicep")
    for param in ("publicNetworkAccess", "denyByDefault", "allowedIpRanges",
                  "logAnalyticsWorkspaceId"):
        given = {to_source(_arg(m, param)) for m in modules}
        if len(given) != 1 or "" in given:
            problems.append(f"the two vaults are not given the same {param}: {sorted(given)}")
    for module in modules:
        name = to_source(_arg(module, "name"))
        if "recover" in t.bicep["modules/keyvault.bicep"].params and name not in to_source(
            _arg(module, "recover")
        ):
            problems.append(f"vault {module.symbol} is not recovered by its own name ({name})")
    return problems


def key_vault_problems(t: Templates) -> list[str]:
    """RBAC only, soft delete 90 days, purge protection, public access a parameter, audit logs."""
    problems = []
    vaults = list(t.resources("Microsoft.KeyVault/vaults"))
    if len(vaults) != 1:
        return [f"expected one Key Vault resource (deployed once per vault), found {len(vaults)}"]
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
    mode = vault.get("properties.createMode")
    modes = (
        {_lit(file, mode.then, ""), _lit(file, mode.otherwise, "")}
        if isinstance(mode, Ternary) else {_lit(file, mode, "default")}
    )
    if modes != {"recover", "default"} or not _names(mode) & set(file.params):
        problems.append(
            "a soft-deleted vault cannot be recovered by the deployment (createMode is not "
            "'recover' or 'default' by a parameter): a re-deployment after `azd down` fails"
        )
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
    """The optional private endpoints: one per vault, privatelink zone linked to the VNet."""
    problems = []
    endpoints = list(t.resources("Microsoft.Network/privateEndpoints"))
    groups = []
    for f, pe in endpoints:
        connections = f.resolve(pe.get("properties.privateLinkServiceConnections"))
        for c in connections.items if isinstance(connections, Arr) else ():
            if isinstance(c, Obj):
                groups.append(_lit(f, c.get("properties.groupIds"), default=[]))
    if ["vault"] not in groups:
        problems.append("no private endpoint for a vault (groupIds ['vault'])")
    zones = [
        _lit(f, z.get("name"), default="")
        for f, z in t.resources("Microsoft.Network/privateDnsZones")
    ]
    if "privatelink.vaultcore.azure.net" not in zones:
        problems.append("no private DNS zone privatelink.vaultcore.azure.net")
    if not list(t.resources("Microsoft.Network/privateDnsZones/virtualNetworkLinks")):
        problems.append("the private DNS zone is not linked to the VNet")
    if not list(t.resources("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")):
        problems.append("the private endpoints are not registered in the private DNS zone")
    endpoint_modules = [m for m in t.main.modules
                        if m.path in ("modules/privateendpoint.bicep", "modules/network.bicep")]
    for module in endpoint_modules:
        if _names(module.condition) != {"usePrivateEndpoint"}:
            problems.append(f"module {module.symbol} is not conditional on usePrivateEndpoint")
    if not any(m.path == "modules/network.bicep" for m in endpoint_modules):
        problems.append("no network module")
    covered = sorted(_fed_vault(t, "modules/privateendpoint.bicep", "keyVaultName"))
    if covered != ["config vault", "token vault"]:
        problems.append(f"not every vault has a private endpoint (only: {covered})")
    if (
        "usePrivateEndpoint" in t.main.params
        and _lit(t.main, t.main.params["usePrivateEndpoint"].default) is not False
    ):
        problems.append("usePrivateEndpoint does not default to false")
    return problems


def site_problems(t: Templates) -> list[str]:
    """Both sites: HTTPS only, TLS 1.2, no FTP, a managed identity, no basic auth."""
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
        if _lit(file, site.get("identity.type")) not in ("SystemAssigned", "UserAssigned"):
            problems.append(f"{who} has no managed identity")
        policies = {
            _lit(file, p.get("name")): _lit(file, p.get("properties.allow"), default=None)
            for p in _children(file, site, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
        }
        for kind in ("ftp", "scm"):
            if policies.get(kind) is not False:
                problems.append(f"{who} allows basic {kind} publishing credentials")
    for file, site in _web_sites(t):
        if _lit(file, site.get("identity.type")) != "SystemAssigned":
            problems.append(f"site {site.symbol} has no system-assigned identity")
    return problems


def _path_of(t: Templates, file: BicepFile) -> str:
    return next(name for name, f in t.bicep.items() if f is file)


def _settings_problems(
    t: Templates, file: BicepFile, site: Resource, required: tuple[str, ...]
) -> list[str]:
    problems = []
    who = f"site {site.symbol}"
    path = _path_of(t, file)
    settings = app_settings(file, site)
    for name in required:
        if name not in settings:
            problems.append(f"{who} lacks the app setting {name}")
    for name, secret in VAULT_SECRETS.items():
        if name not in settings:
            continue
        if _vault_reference(settings[name]) != secret:
            problems.append(f"{who}: {name} is not a Key Vault reference to the secret {secret}")
            continue
        vault = _names(settings[name]) & set(file.params)
        fed = set().union(*(_fed_vault(t, path, p) for p in vault)) if vault else {"?"}
        if fed != {"config vault"}:
            problems.append(f"{who}: {name} does not refer to the config vault ({sorted(fed)})")
    for name, vault in VAULT_URL_SETTINGS.items():
        value = settings.get(name)
        param = value.id if isinstance(value, Name) and value.id in file.params else None
        if name in settings and (param is None or _fed_vault(t, path, param) != {vault}):
            problems.append(f"{who}: {name} is not the {vault}'s URI")
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
        problems += _settings_problems(t, file, site, CONTRACT_SETTINGS)
        settings = app_settings(file, site)
        for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"):
            if name in settings:
                problems.append(f"the function app sets {name}, which Flex Consumption rejects")
    return problems


def function_identity_problems(t: Templates) -> list[str]:
    """The Flex app runs as a user-assigned identity that holds its roles before the app exists,
    for everything: storage, the deployment container, Key Vault references, the broker's SDK
    calls and telemetry. (A system-assigned identity is granted after the app is created, and
    `azd deploy` right after can be refused with 403 until RBAC propagates.)"""
    problems = []
    sites = _function_sites(t)
    if len(sites) != 1:
        return ["expected one function app"]
    file, site = sites[0]
    identity = site.get("identity.userAssignedIdentities")
    keys = list(identity.items) if isinstance(identity, Obj) else []
    ids = {k[3:-2] for k in keys if k.startswith("'${") and k.endswith("}'")}
    if _lit(file, site.get("identity.type")) != "UserAssigned" or len(ids) != 1:
        return ["the function app does not run as one user-assigned identity alone"]
    (identity_param,) = ids
    config = "properties.functionAppConfig.deployment.storage.authentication."
    if _lit(file, site.get(config + "type")) != "UserAssignedIdentity" or _names(
        site.get(config + "userAssignedIdentityResourceId")
    ) != {identity_param}:
        problems.append("the deployment container is not read with the user-assigned identity")
    if _names(site.get("properties.keyVaultReferenceIdentity")) != {identity_param}:
        problems.append("Key Vault references do not resolve with the user-assigned identity")
    settings = app_settings(file, site)
    path = _path_of(t, file)
    (app,) = _modules_of(t, path) or (None,)
    identities = {m.symbol for m in _modules_of(t, "modules/identity.bicep")}
    fed = {p: _output_of(_arg(app, p)) for p in file.params} if app is not None else {}
    client = {p for p, src in fed.items() if src and src[0] in identities and src[1] == "clientId"}
    if fed.get(identity_param) is None or fed[identity_param][0] not in identities:
        problems.append(f"the function app's {identity_param} is not the identity module's id")
    for name in ("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"):
        if not client or _names(settings.get(name)) != client:
            problems.append(f"{name} is not the user-assigned identity's client id")
    if not client or not _names(settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")) & client:
        problems.append("telemetry is not sent as the user-assigned identity (ClientId=...)")
    if _param_source(t, "modules/roles.bicep", "functionPrincipalId") != "function identity":
        problems.append("the function app's roles are not granted to its user-assigned identity")
    roles = {m.symbol for m in _modules_of(t, "modules/roles.bicep")}
    depends = app.get("dependsOn") if app is not None else None
    after = {n.id for n in depends.items if isinstance(n, Name)} if isinstance(
        depends, Arr) else set()
    used = {s[0] for n in (app.body.walk() if app else ()) if (s := _output_of(n))}
    if not roles or not roles & (after | used):
        problems.append(
            "the function app is not deployed after its identity's role assignments "
            "(dependsOn the roles module): the first `azd deploy` can race RBAC and get 403"
        )
    return problems


def web_app_problems(t: Templates) -> list[str]:
    """Linux Python 3.11 with the gunicorn startup command, build on deploy, every setting."""
    problems = []
    for file, site in _web_sites(t):
        if _lit(file, site.get("properties.siteConfig.linuxFxVersion")) != "PYTHON|3.11":
            problems.append("the web app does not run Python 3.11 on Linux")
        command = str(_lit(file, site.get("properties.siteConfig.appCommandLine"), default=""))
        if command != STARTUP_COMMAND:
            problems.append("the web app's startup command is not the gunicorn app factory")
        workers = re.search(r"--workers[ =](\d+)", command)
        threads = re.search(r"--threads[ =](\d+)", command)
        if int(workers.group(1) if workers else 1) * int(threads.group(1) if threads else 1) < 2:
            problems.append("gunicorn serves one request at a time (one sync worker)")
        problems += _settings_problems(t, file, site, (*CONTRACT_SETTINGS, *WEB_SETTINGS))
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


def telemetry_problems(t: Templates) -> list[str]:
    """Application Insights takes Entra-authenticated telemetry only, and both apps send it:
    the Functions host with its identity, the site through the OpenTelemetry distro."""
    problems = []
    components = list(t.resources("Microsoft.Insights/components"))
    if len(components) != 1:
        return [f"expected one Application Insights, found {len(components)}"]
    file, component = components[0]
    if not _is_true(file, component.get("properties.DisableLocalAuth")):
        problems.append("Application Insights accepts the instrumentation key (DisableLocalAuth)")
    for site_file, site in t.resources("Microsoft.Web/sites"):
        value = app_settings(site_file, site).get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
        parts = value.parts if isinstance(value, Str) else ()
        text = "".join(p for p in parts if isinstance(p, str))
        if "Authorization=AAD" not in text:
            problems.append(f"site {site.symbol} does not send telemetry with Entra ID")
    requirements = t.texts.get("../requirements.txt", "")
    if not re.search(r"^azure-monitor-opentelemetry==\S+", requirements, flags=re.M):
        problems.append("requirements.txt does not pin azure-monitor-opentelemetry (the site "
                        "sends nothing without it)")
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


def _scope_name(t: Templates, file: BicepFile, scope: Node | None) -> str:
    """What a role assignment's scope is, in the words of EXPECTED_ROLES."""
    resource = next(
        (r for r in file.resources if isinstance(scope, Name) and r.symbol == scope.id), None
    )
    if resource is None:
        return f"an unknown scope ({to_source(scope)})"
    name = resource.get("name")
    if resource.type == "Microsoft.KeyVault/vaults":
        if isinstance(name, Name) and name.id in file.params:
            return _param_source(t, _path_of(t, file), name.id)
        return f"a vault named {to_source(name)}"
    if resource.type == "Microsoft.Storage/storageAccounts":
        return "storage account"
    if resource.type == "Microsoft.Insights/components":
        return "Application Insights"
    last = name.parts[-1] if isinstance(name, Str) and name.parts else None
    leaf = last.rsplit("/", 1)[-1] if isinstance(last, str) else to_source(name)
    kind = resource.type.rsplit("/", 1)[-1].rstrip("s")
    return f"{leaf} {'container' if kind == 'container' else kind}"


def role_assignments(t: Templates) -> set[tuple[str, str, str]]:
    """What the templates grant, as (whose principal, role, scope) in EXPECTED_ROLES' words."""
    return {line for line, _ in _assignments(t) if line is not None}


def _assignments(t: Templates):
    """Each role assignment as ((holder, role, scope) or None for an unknown role, problems)."""
    for file, ra in t.resources("Microsoft.Authorization/roleAssignments"):
        who = f"role assignment {ra.symbol}"
        guid = role_guid(file, ra.get("properties.roleDefinitionId"))
        if guid not in ROLES:
            yield None, [f"{who} grants a role outside the allowed set: {guid}"]
            continue
        problems = []
        principal = ra.get("properties.principalId")
        holder = (
            _param_source(t, _path_of(t, file), principal.id)
            if isinstance(principal, Name) and principal.id in file.params
            else f"someone else ({to_source(principal)})"
        )
        if ra.loop is not None:
            holder = f"a list of principals ({to_source(ra.loop.iterable)})"
        name = ra.get("name")
        if not (
            isinstance(name, Call)
            and name.name == "guid"
            and len(name.args) == 3
            and name.args[1] == principal
            and role_guid(file, name.args[2]) == guid
            and _names(name.args[0]) == _names(ra.get("scope"))
        ):
            problems.append(f"{who} is not named guid(scope.id, principalId, roleDefinitionId)")
        if holder == "deployer" and "deployerPrincipalId" not in _names(ra.condition):
            problems.append(f"{who} is not conditional on a deployer being given")
        yield (holder, ROLES[guid], _scope_name(t, file, ra.get("scope"))), problems


def role_problems(t: Templates) -> list[str]:
    """Least privilege: exactly the assignments of EXPECTED_ROLES, named and conditioned well."""
    found = list(_assignments(t))
    if not found:
        return ["no role assignments"]
    problems = [p for _, ps in found for p in ps]
    granted = {line for line, _ in found if line is not None}
    for line in sorted(granted - EXPECTED_ROLES):
        problems.append("unexpected role assignment: {} gets {} on the {}".format(*line))
    for line in sorted(EXPECTED_ROLES - granted):
        problems.append("missing role assignment: {} gets {} on the {}".format(*line))
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


def _admits(file: BicepFile, sub: Resource, subject: str) -> bool:
    """Whether an event subscription's filter lets an event with this subject through."""
    event_filter = sub.get("properties.filter")
    if not isinstance(event_filter, Obj):
        return True
    if event_filter.get("advancedFilters") is not None:
        return False  # not read here: keep the filter simple enough to check
    begins = _lit(file, event_filter.get("subjectBeginsWith"), default=None) or ""
    ends = _lit(file, event_filter.get("subjectEndsWith"), default=None) or ""
    return subject.startswith(begins) and subject.endswith(ends)


def event_grid_problems(t: Templates) -> list[str]:
    """A system topic on each vault; near-expiry and expired events of every secret the broker
    must act on (refresh tokens, partner app secrets, its own CPV and operator secrets) go to
    the function, behind the parameter that waits for the code."""
    problems = []
    topics = list(t.resources("Microsoft.EventGrid/systemTopics"))
    if len(topics) != 1:
        return [f"expected one Event Grid system topic (deployed per vault), found {len(topics)}"]
    file, topic = topics[0]
    if _lit(file, topic.get("properties.topicType")) != "Microsoft.KeyVault.vaults":
        problems.append("the system topic is not a Key Vault topic")
    source = topic.get("properties.source")
    source_resource = next(
        (r for r in file.resources if isinstance(source, Member) and _names(source) == {r.symbol}),
        None,
    )
    if source_resource is None or source_resource.type != "Microsoft.KeyVault/vaults":
        problems.append("the system topic's source is not a vault")
    path = _path_of(t, file)
    watched = sorted(_fed_vault(t, path, "keyVaultName"))
    if watched != sorted(WATCHED_SECRETS) or len(_modules_of(t, path)) != len(WATCHED_SECRETS):
        problems.append(f"not each vault's events are delivered, once (only: {watched})")
    subscriptions = _children(file, topic, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    if len(subscriptions) != 1:
        return [*problems, f"expected one event subscription, found {len(subscriptions)}"]
    sub = subscriptions[0]
    if set(_lit(file, sub.get("properties.filter.includedEventTypes"), default=[])) != (
        NEAR_EXPIRY_EVENTS
    ):
        problems.append("the subscription does not take exactly SecretNearExpiry and SecretExpired")
    for vault in watched:
        for secret in WATCHED_SECRETS.get(vault, ()):
            if not _admits(file, sub, secret):
                problems.append(f"the {vault}'s events about {secret} are filtered out")
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
    """Every inline checkov skip gives a true reason, and none skips a promised property."""
    problems = []
    http = re.search(r"^@app\.route\(", t.texts.get("../function_app.py", ""), flags=re.M)
    for name, text in t.texts.items():
        for match in re.finditer(r"#checkov:skip=(\w+)(:?\s*(.*))", text):
            check, reason = match.group(1), match.group(3).strip()
            if len(reason) < 20:
                problems.append(f"{name}: skip of {check} gives no reason")
            if check in GUARANTEED_CHECKS:
                problems.append(f"{name}: {check} is skipped, but {GUARANTEED_CHECKS[check]}")
            if http and re.search(r"\bno HTTP", reason, flags=re.I):
                problems.append(f"{name}: the skip of {check} says there are no HTTP-triggered "
                                "functions, but function_app.py declares one")
    return problems


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def azd_version_problems(t: Templates) -> list[str]:
    """azure.yaml states the azd release the template needs, and main.parameters.json passes
    nothing that release cannot convert (`${VAR}` text into an array or object parameter)."""
    problems = []
    yaml = t.texts.get("../azure.yaml", "")
    found = re.search(r"^requiredVersions:\n  azd: ['\"]?>=\s*([0-9]+\.[0-9]+\.[0-9]+)", yaml,
                      flags=re.M)
    if found is None:
        problems.append("azure.yaml does not declare requiredVersions.azd ('>= x.y.z')")
    minimum = _version(found.group(1)) if found else (0, 0, 0)
    try:
        parameters = json.loads(t.texts["main.parameters.json"])["parameters"]
    except (KeyError, ValueError):
        return [*problems, "main.parameters.json is missing or not JSON"]
    for key, entry in parameters.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        param = t.main.params.get(key)
        if (
            isinstance(value, str)
            and "${" in value
            and param is not None
            and param.type in ("array", "object")
            and minimum < AZD_ARRAY_PARAMETERS
        ):
            problems.append(
                f"{param.type} parameter {key} is given the text {value}: azd releases before "
                f"{'.'.join(map(str, AZD_ARRAY_PARAMETERS))} pass it on as a string and ARM "
                "rejects every deployment"
            )
    return problems


def _hooks(yaml: str) -> dict[str, dict[str, str]]:
    """azure.yaml's `hooks:` section: hook name -> its keys (shell, run, ...)."""
    section = re.search(r"^hooks:\n((?:[ #].*\n|\n)*)", yaml, flags=re.M)
    hooks: dict[str, dict[str, str]] = {}
    for block in re.finditer(r"^  (\w+):\n((?:    .*\n)+)", section.group(1) if section else "",
                             flags=re.M):
        hooks[block.group(1)] = dict(
            re.findall(r"^    (\w+):\s*(.*?)\s*$", block.group(2), flags=re.M)
        )
    return hooks


def hook_problems(t: Templates) -> list[str]:
    """The azd hooks that make a re-deployment work run scripts that exist and handle each
    case: the Microsoft.App provider for the private endpoint, the soft-deleted vaults after
    `azd down`, and event subscriptions left switched on."""
    problems = []
    hooks = _hooks(t.texts.get("../azure.yaml", ""))
    for hook, words in HOOKS.items():
        entry = hooks.get(hook)
        if entry is None:
            problems.append(f"azure.yaml has no {hook} hook")
            continue
        run = entry.get("run", "")
        script = t.texts.get(run.removeprefix("infra/"))
        if entry.get("shell") != "sh" or not run.startswith("infra/hooks/") or script is None:
            problems.append(f"the {hook} hook does not run a sh script of infra/hooks/ ({run})")
            continue
        code = "\n".join(line for line in script.splitlines()
                          if not line.lstrip().startswith("#"))
        for word in words:
            if word not in code:
                problems.append(f"the {hook} hook ({run}) does not handle {word}")
    try:
        parameters = json.loads(t.texts["main.parameters.json"])["parameters"]
    except (KeyError, ValueError):
        return [*problems, "main.parameters.json is missing or not JSON"]
    for param, variable in (("recoverKeyVaults", "RECOVER_KEY_VAULTS"),
                            ("deployEventSubscription", "DEPLOY_EVENT_SUBSCRIPTION")):
        value = parameters.get(param, {}).get("value", "")
        if not str(value).startswith("${" + variable + "="):
            problems.append(f"{param} is not read from {variable}, which the hooks set")
    return problems


def upload_problems(t: Templates) -> list[str]:
    """azd uploads neither the virtual environment `azd restore` creates nor local settings."""
    problems = []
    for name in ("../.funcignore", "../.webappignore"):
        patterns = [
            line.strip().rstrip("/")
            for line in t.texts.get(name, "").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        for path in NOT_UPLOADED:
            if not any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
                problems.append(f"{name[3:]} does not keep {path} out of the package")
    return problems


def readme_problems(t: Templates) -> list[str]:
    """infra/README.md walks what the templates do: the azd version azure.yaml requires, the
    first deployment, the re-deployment after `azd down`, the private endpoint, the exact
    command that gives a consumer one credential, and only settings the templates read."""
    problems = []
    readme = t.texts.get("README.md", "")
    required = re.search(r"^requiredVersions:\n  azd: ['\"]?>=\s*([0-9.]+)",
                         t.texts.get("../azure.yaml", ""), flags=re.M)
    if required is None or f"**{required.group(1)} or later**" not in readme:
        problems.append("the README does not state the azd version azure.yaml requires")
    for heading in ("## First deployment", "## Tearing down, and deploying again after `azd down`",
                    "## Private endpoint", "## Consumers"):
        if f"\n{heading}\n" not in readme:
            problems.append(f"the README has no section {heading!r}")
    grant = re.search(r'az role assignment create --role "Key Vault Secrets User" \\\n'
                      r'(?:  .*\\\n)*  --scope "\$AZURE_KEY_VAULT_ID/secrets/rt-[a-z0-9-]+"',
                      readme)
    if grant is None or "AZURE_KEY_VAULT_ID" not in t.main.outputs:
        problems.append("the README does not give the command that grants a consumer one "
                        "credential (Key Vault Secrets User on the secret rt-<id>)")
    try:
        parameters = json.loads(t.texts["main.parameters.json"])["parameters"]
    except (KeyError, ValueError):
        return [*problems, "main.parameters.json is missing or not JSON"]
    read = set(re.findall(r"\$\{([A-Z_]+)", json.dumps(parameters)))
    for variable in sorted(set(re.findall(r"azd env set ([A-Z_]+)", readme)) - {"NAME"}):
        if variable not in read:
            problems.append(f"the README sets {variable}, which main.parameters.json never reads")
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
    "vault_split": vault_split_problems,
    "function_identity": function_identity_problems,
    "telemetry": telemetry_problems,
    "azd_version": azd_version_problems,
    "hooks": hook_problems,
    "uploads": upload_problems,
    "readme": readme_problems,
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
