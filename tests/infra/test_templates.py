"""The Bicep templates keep their security and deployment properties.

Every rule in tests/infra/rules.py must hold for infra/ as committed, and every rule must be able
to fail: each mutation below edits one template the way a regression would, and the rule that
guards that property has to report it.
"""

from __future__ import annotations

import re

import pytest

from tests.infra.rules import INFRA, RULES, load

TEMPLATES = load()


def mutated(path: str, old: str | re.Pattern[str], new: str):
    """The templates with one edit made to `path`; the edit must apply exactly once."""
    text = TEMPLATES.texts[path]
    if isinstance(old, re.Pattern):
        changed, count = old.subn(new, text, count=1)
    else:
        count = text.count(old)
        changed = text.replace(old, new)
    assert count == 1, f"the mutation must match exactly once in {path}, matched {count} times"
    return load({path: changed})


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_holds_for_the_committed_templates(rule):
    assert RULES[rule](TEMPLATES) == []


def test_rules_read_every_template_in_infra():
    on_disk = sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.bicep"))
    assert sorted(TEMPLATES.bicep) == on_disk
    assert len(on_disk) >= 9


def setting_block(name: str) -> re.Pattern[str]:
    """The `{ name: '<name>' value: ... }` entry of an appSettings array, to cut it out."""
    return re.compile(rf"  \{{\n    name: '{name}'\n    value: [^\n]*\n  \}}\n")


KV = "modules/keyvault.bicep"
NET = "modules/network.bicep"
FUNC = "modules/functionapp.bicep"
WEB = "modules/webapp.bicep"
ST = "modules/storage.bicep"
ROLES = "modules/roles.bicep"
EG = "modules/eventgrid.bicep"
MAIN = "main.bicep"
PARAMS = "main.parameters.json"
YAML = "../azure.yaml"

# (rule, file, old, new, what the rule must say)
MUTATIONS = {
    # Key Vault
    "purge_protection_removed": (
        "key_vault",
        KV,
        "    enablePurgeProtection: true\n",
        "",
        "purge protection",
    ),
    "rbac_authorization_off": (
        "key_vault",
        KV,
        "enableRbacAuthorization: true",
        "enableRbacAuthorization: false",
        "RBAC",
    ),
    "access_policy_added": (
        "key_vault",
        KV,
        "    enableSoftDelete: true\n",
        "    enableSoftDelete: true\n    accessPolicies: [\n      {\n        objectId: 'x'\n"
        "      }\n    ]\n",
        "access policies",
    ),
    "soft_delete_off": (
        "key_vault",
        KV,
        "enableSoftDelete: true",
        "enableSoftDelete: false",
        "soft delete",
    ),
    "soft_delete_retention_shortened": (
        "key_vault",
        KV,
        "softDeleteRetentionInDays: 90",
        "softDeleteRetentionInDays: 7",
        "90 days",
    ),
    "vault_public_access_hardcoded": (
        "key_vault",
        KV,
        "publicNetworkAccess: publicNetworkAccess",
        "publicNetworkAccess: 'Enabled'",
        "parameter",
    ),
    "vault_audit_log_dropped": (
        "key_vault",
        KV,
        "category: 'AuditEvent'",
        "category: 'AzurePolicyEvaluationDetails'",
        "AuditEvent",
    ),
    # private endpoint
    "private_dns_zone_misnamed": (
        "private_endpoint",
        NET,
        "'privatelink.vaultcore.azure.net'",
        "'privatelink.vault.azure.net'",
        "privatelink.vaultcore.azure.net",
    ),
    "private_endpoint_for_another_service": (
        "private_endpoint",
        NET,
        "            'vault'\n",
        "            'blob'\n",
        "groupIds",
    ),
    "network_deployed_unconditionally": (
        "private_endpoint",
        MAIN,
        "module network 'modules/network.bicep' = if (usePrivateEndpoint) {",
        "module network 'modules/network.bicep' = {",
        "conditional",
    ),
    # both sites
    "web_app_allows_http": (
        "sites",
        WEB,
        "    httpsOnly: true\n",
        "    httpsOnly: false\n",
        "httpsOnly",
    ),
    "function_app_accepts_tls_1_0": (
        "sites",
        FUNC,
        "minTlsVersion: '1.2'",
        "minTlsVersion: '1.0'",
        "TLS 1.2",
    ),
    "web_app_allows_ftp": ("sites", WEB, "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'", "FTP"),
    "function_app_without_identity": (
        "sites",
        FUNC,
        "  identity: {\n    type: 'SystemAssigned'\n  }",
        "  identity: {\n    type: 'None'\n  }",
        "system-assigned identity",
    ),
    "web_app_allows_basic_scm_credentials": (
        "sites",
        WEB,
        "  name: 'scm'\n  properties: {\n    allow: false",
        "  name: 'scm'\n  properties: {\n    allow: true",
        "basic scm",
    ),
    # function app
    "function_app_loses_a_contract_setting": (
        "function_app",
        FUNC,
        setting_block("BROKER_SMTP_URL"),
        "",
        "BROKER_SMTP_URL",
    ),
    "secret_key_in_plain_text": (
        "function_app",
        FUNC,
        "'@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/broker-secret-key)'",
        "'not-so-secret'",
        "BROKER_SECRET_KEY is not a Key Vault reference",
    ),
    "cpv_secret_from_the_wrong_secret": (
        "function_app",
        FUNC,
        "secrets/cpv-client-secret)",
        "secrets/cpv-secret)",
        "cpv-client-secret",
    ),
    "storage_reached_with_a_key": (
        "function_app",
        FUNC,
        "name: 'AzureWebJobsStorage__credential'\n    value: 'managedidentity'",
        "name: 'AzureWebJobsStorage__credential'\n    value: 'connectionstring'",
        "managed identity",
    ),
    "function_app_on_the_old_consumption_plan": (
        "function_app",
        FUNC,
        "name: 'FC1'",
        "name: 'Y1'",
        "Flex Consumption",
    ),
    "function_app_on_python_3_12": (
        "function_app",
        FUNC,
        "version: '3.11'",
        "version: '3.12'",
        "Python 3.11",
    ),
    "function_app_sets_worker_runtime": (
        "function_app",
        FUNC,
        "var appSettings = [\n",
        "var appSettings = [\n  {\n    name: 'FUNCTIONS_WORKER_RUNTIME'\n"
        "    value: 'python'\n  }\n",
        "FUNCTIONS_WORKER_RUNTIME",
    ),
    # web app
    "web_app_loses_operator_auth_setting": (
        "web_app",
        WEB,
        setting_block("BROKER_OPERATOR_AUTH"),
        "",
        "BROKER_OPERATOR_AUTH",
    ),
    "web_app_cpv_secret_in_plain_text": (
        "web_app",
        WEB,
        "'@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/cpv-client-secret)'",
        "cpvClientSecret",
        "BROKER_CPV_CLIENT_SECRET",
    ),
    "web_app_startup_command_changed": ("web_app", WEB, "--timeout 120 ", "", "startup command"),
    "web_app_skips_the_build": (
        "web_app",
        WEB,
        "name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'\n    value: 'true'",
        "name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'\n    value: 'false'",
        "build",
    ),
    "web_plan_defaults_to_free": (
        "web_app",
        MAIN,
        "param webPlanSku string = 'B1'",
        "param webPlanSku string = 'F1'",
        "B1",
    ),
    # App Service Authentication
    "easy_auth_does_not_require_sign_in": (
        "easy_auth",
        WEB,
        "requireAuthentication: true",
        "requireAuthentication: false",
        "requireAuthentication",
    ),
    "consent_done_page_behind_sign_in": (
        "easy_auth",
        WEB,
        "  '/consent/done'\n",
        "",
        "/consent/done",
    ),
    "operator_secret_in_plain_text": (
        "web_app",
        WEB,
        "name: 'BROKER_OPERATOR_CLIENT_SECRET'\n"
        "    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/operator-client-secret)'",
        "name: 'BROKER_OPERATOR_CLIENT_SECRET'\n    value: 'hunter2'",
        "operator-client-secret",
    ),
    "oauth_callback_behind_sign_in": (
        "easy_auth",
        WEB,
        "  '/consent/callback'\n",
        "",
        "/consent/callback",
    ),
    "invite_page_behind_sign_in_by_default": (
        "easy_auth",
        MAIN,
        "  '/invite/*'\n",
        "",
        "/invite/*",
    ),
    "anonymous_operators_let_in": (
        "easy_auth",
        WEB,
        "'RedirectToLoginPage' : 'Return401'",
        "'RedirectToLoginPage' : 'AllowAnonymous'",
        "redirected to login",
    ),
    "easy_auth_in_entra_mode_too": (
        "easy_auth",
        WEB,
        "= if (easyAuth) {",
        "= {",
        "operatorAuth is easyauth",
    ),
    "easy_auth_platform_off": (
        "easy_auth",
        WEB,
        "    platform: {\n      enabled: true",
        "    platform: {\n      enabled: false",
        "platform.enabled",
    ),
    "operator_client_id_hardcoded": (
        "easy_auth",
        WEB,
        "clientId: operatorClientId",
        "clientId: 'x'",
        "client id",
    ),
    # storage
    "storage_allows_shared_keys": (
        "storage",
        ST,
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
        "SharedKey",
    ),
    "storage_accepts_tls_1_0": (
        "storage",
        ST,
        "minimumTlsVersion: 'TLS1_2'",
        "minimumTlsVersion: 'TLS1_0'",
        "Tls",
    ),
    "storage_allows_public_blobs": (
        "storage",
        ST,
        "allowBlobPublicAccess: false",
        "allowBlobPublicAccess: true",
        "allowBlobPublicAccess",
    ),
    "storage_accepts_http": (
        "storage",
        ST,
        "supportsHttpsTrafficOnly: true",
        "supportsHttpsTrafficOnly: false",
        "supportsHttpsTrafficOnly",
    ),
    "poison_queue_missing": (
        "storage",
        ST,
        "name: 'rotations-poison'",
        "name: 'rotations-failed'",
        "rotations-poison",
    ),
    "lease_container_missing": (
        "storage",
        ST,
        "name: 'broker-leases'",
        "name: 'leases'",
        "broker-leases",
    ),
    # role assignments
    "consumers_made_owners": (
        "roles",
        ROLES,
        "'4633458b-17de-408a-b874-0445c86b69e6'",
        "'8e3af657-a8ff-443c-a75c-2fe8c4bcb635'",
        "outside the allowed set",
    ),
    "apps_made_key_vault_administrators": (
        "roles",
        ROLES,
        "'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'",
        "'00482a5a-887f-4fb3-b363-3b7fe8e74483'",
        "outside the allowed set",
    ),
    "consumers_made_secrets_officers": (
        "roles",
        ROLES,
        "    roleDefinitionId: keyVaultSecretsUser\n",
        "    roleDefinitionId: keyVaultSecretsOfficer\n",
        "more than Key Vault Secrets User",
    ),
    "deployer_granted_unconditionally": (
        "roles",
        ROLES,
        "= if (!empty(deployerPrincipalId)) {",
        "= {",
        "conditional on a deployer",
    ),
    "secrets_officer_role_at_resource_group_scope": (
        "roles",
        ROLES,
        re.compile(
            r"(  name: guid\(vault\.id, functionPrincipalId, keyVaultSecretsOfficer\)\n)"
            r"  scope: vault\n"
        ),
        r"\1",
        "not scoped",
    ),
    "assignment_name_not_derived_from_principal": (
        "roles",
        ROLES,
        "name: guid(vault.id, webPrincipalId, keyVaultSecretsOfficer)",
        "name: guid(vault.id, keyVaultSecretsOfficer, 'web')",
        "guid(scope, principalId, roleDefinitionId)",
    ),
    "role_comment_names_another_role": (
        "roles",
        ROLES,
        "// Storage Blob Data Owner\n",
        "// Storage Blob Data Contributor\n",
        "role name",
    ),
    "web_app_gets_blob_owner": (
        "roles",
        ROLES,
        "    roleDefinitionId: storageBlobDataContributor\n",
        "    roleDefinitionId: storageBlobDataOwner\n",
        "roles never assigned",
    ),
    # Event Grid
    "expired_events_not_delivered": (
        "event_grid",
        EG,
        "        'Microsoft.KeyVault.SecretExpired'\n",
        "",
        "SecretExpired",
    ),
    "all_secrets_delivered": (
        "event_grid",
        EG,
        "subjectBeginsWith: 'rt-'",
        "subjectBeginsWith: 'cs-'",
        "rt-",
    ),
    "events_to_the_wrong_function": (
        "event_grid",
        EG,
        "/functions/secret_near_expiry",
        "/functions/near_expiry",
        "secret_near_expiry",
    ),
    "subscription_before_the_code_exists": (
        "event_grid",
        EG,
        "= if (deploySubscription) {",
        "= {",
        "behind a parameter",
    ),
    "subscription_on_by_default": (
        "event_grid",
        MAIN,
        "param deployEventSubscription bool = false",
        "param deployEventSubscription bool = true",
        "default to false",
    ),
    "topic_on_another_source": (
        "event_grid",
        EG,
        "topicType: 'Microsoft.KeyVault.vaults'",
        "topicType: 'Microsoft.Storage.StorageAccounts'",
        "Key Vault topic",
    ),
    # outputs
    "redirect_uri_output_missing": (
        "outputs",
        MAIN,
        re.compile(r"output REDIRECT_URI [^\n]*\n"),
        "",
        "REDIRECT_URI",
    ),
    "output_not_upper_snake": (
        "outputs",
        MAIN,
        "output AZURE_WEB_APP_NAME",
        "output azureWebAppName",
        "UPPER_SNAKE",
    ),
    "redirect_uri_on_another_path": (
        "outputs",
        MAIN,
        "}/consent/callback'",
        "}/callback'",
        "/consent/callback",
    ),
    # azd conventions
    "main_at_resource_group_scope": (
        "template",
        MAIN,
        "targetScope = 'subscription'",
        "targetScope = 'resourceGroup'",
        "subscription scope",
    ),
    "resource_token_ignores_location": (
        "template",
        MAIN,
        "uniqueString(subscription().id, environmentName, location)",
        "uniqueString(subscription().id, environmentName)",
        "resourceToken",
    ),
    "azd_env_name_tag_dropped": (
        "template",
        MAIN,
        "  'azd-env-name': environmentName\n",
        "",
        "azd-env-name",
    ),
    "vault_untagged": (
        "template",
        KV,
        "  location: location\n  tags: tags\n  properties: {\n    // #checkov",
        "  location: location\n  properties: {\n    // #checkov",
        "not tagged",
    ),
    "vault_name_not_overridable": (
        "template",
        MAIN,
        "param keyVaultName string = ''",
        "param keyVaultName string = 'kv-broker'",
        "keyVaultName",
    ),
    "parameters_file_names_an_unknown_parameter": (
        "template",
        PARAMS,
        '"usePrivateEndpoint": {',
        '"usePrivateEndpoints": {',
        "does not declare",
    ),
    "parameters_file_ignores_azd_environment": (
        "template",
        PARAMS,
        '"${AZURE_ENV_NAME}"',
        '"broker"',
        "AZURE_ENV_NAME",
    ),
    "azure_yaml_web_on_another_host": (
        "template",
        YAML,
        "    host: appservice\n",
        "    host: containerapp\n",
        "host: appservice",
    ),
    "web_site_not_tagged_for_azd": (
        "template",
        WEB,
        "'azd-service-name': 'web'",
        "'azd-service-name': 'site'",
        "azd-service-name",
    ),
    # modules
    "module_given_an_unknown_parameter": (
        "modules",
        MAIN,
        "    retentionInDays: brokerEnvironment",
        "    retentionDays: brokerEnvironment",
        "unknown param retentionDays",
    ),
    "module_missing_a_required_parameter": (
        "modules",
        MAIN,
        "    deploymentContainerName: storage.outputs.deploymentContainerName\n",
        "",
        "lacks required param deploymentContainerName",
    ),
    "module_output_misspelled": (
        "modules",
        MAIN,
        "output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri",
        "output AZURE_KEY_VAULT_URL string = keyVault.outputs.url",
        "keyVault.outputs.url",
    ),
    "module_path_misspelled": (
        "modules",
        MAIN,
        "'modules/eventgrid.bicep'",
        "'modules/event-grid.bicep'",
        "missing modules/event-grid.bicep",
    ),
    "role_variable_misspelled": (
        "names",
        ROLES,
        "    roleDefinitionId: storageQueueDataMessageSender\n",
        "    roleDefinitionId: storageQueueDataMessageSendr\n",
        "storageQueueDataMessageSendr is not declared",
    ),
    "parameter_misspelled_in_a_condition": (
        "names",
        EG,
        "= if (deploySubscription) {",
        "= if (deploySubscriptions) {",
        "deploySubscriptions is not declared",
    ),
    # checkov skips
    "promised_check_skipped": (
        "checkov_skips",
        KV,
        "    enableSoftDelete: true\n",
        "    enableSoftDelete: true\n    // #checkov:skip=CKV_AZURE_110: it gets in the way\n",
        "CKV_AZURE_110",
    ),
    "check_skipped_without_reason": (
        "checkov_skips",
        ST,
        re.compile(r"(#checkov:skip=CKV_AZURE_206):[^\n]*"),
        r"\1",
        "no reason",
    ),
}


FAKE_FUNCTION_APP = """
import azure.functions as func

app = func.FunctionApp()
QUEUE = "rotations"


@app.timer_trigger(arg_name="timer", schedule="%BROKER_ROTATE_SCHEDULE%")
def rotate_due(timer): ...


@app.queue_trigger(arg_name="message", queue_name=QUEUE, connection="AzureWebJobsStorage")
def rotate_one(message): ...


@app.event_grid_trigger(arg_name="event")
def secret_near_expiry(event): ...
"""

FUNCTION_APP_MUTATIONS = {
    "a_schedule_setting_nobody_sets": (
        'schedule="%BROKER_ROTATE_SCHEDULE%"',
        'schedule="%BROKER_AUDIT_SCHEDULE%"',
        "%BROKER_AUDIT_SCHEDULE%",
    ),
    "a_queue_nobody_creates": ('QUEUE = "rotations"', 'QUEUE = "renewals"', "renewals"),
    "a_queue_named_inline": ("queue_name=QUEUE", 'queue_name="audit-log"', "audit-log"),
    "event_grid_function_renamed": (
        "def secret_near_expiry(event)",
        "def on_expiry(event)",
        "secret_near_expiry",
    ),
}


def test_function_bindings_hold_for_a_matching_function_app():
    assert RULES["function_bindings"](load({"../function_app.py": FAKE_FUNCTION_APP})) == []


@pytest.mark.parametrize("mutation", sorted(FUNCTION_APP_MUTATIONS))
def test_function_bindings_report_what_the_code_needs_and_infra_lacks(mutation):
    old, new, expected = FUNCTION_APP_MUTATIONS[mutation]
    assert FAKE_FUNCTION_APP.count(old) == 1
    code = FAKE_FUNCTION_APP.replace(old, new)
    problems = RULES["function_bindings"](load({"../function_app.py": code}))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_rule_reports_the_regression(mutation):
    rule, path, old, new, expected = MUTATIONS[mutation]
    problems = RULES[rule](mutated(path, old, new))
    assert any(expected in p for p in problems), problems


def test_every_rule_is_proven_able_to_fail():
    assert {m[0] for m in MUTATIONS.values()} | {"function_bindings"} == set(RULES)
