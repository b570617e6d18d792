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
PE = "modules/privateendpoint.bicep"
MON = "modules/monitoring.bicep"
PRE = "hooks/preprovision.sh"
MAIN = "main.bicep"
PARAMS = "main.parameters.json"
YAML = "../azure.yaml"
README = "README.md"
REQS = "../requirements.txt"
FUNCIGNORE = "../.funcignore"
WEBAPPIGNORE = "../.webappignore"

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
        PE,
        "            'vault'\n",
        "            'blob'\n",
        "groupIds",
    ),
    "config_vault_without_private_endpoint": (
        "private_endpoint",
        MAIN,
        "    keyVaultName: configVault.outputs.name\n    subnetId",
        "    keyVaultName: keyVault.outputs.name\n    subnetId",
        "not every vault has a private endpoint",
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
    "web_app_without_identity": (
        "sites",
        WEB,
        "  identity: {\n    type: 'SystemAssigned'\n  }",
        "  identity: {\n    type: 'None'\n  }",
        "no managed identity",
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
        "'@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/broker-secret-key)'",
        "'not-so-secret'",
        "BROKER_SECRET_KEY is not a Key Vault reference",
    ),
    "signing_key_read_from_the_token_vault": (
        "function_app",
        FUNC,
        "'@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/broker-secret-key)'",
        "'@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/broker-secret-key)'",
        "BROKER_SECRET_KEY does not refer to the config vault",
    ),
    "config_vault_url_names_the_token_vault": (
        "function_app",
        MAIN,
        "    configVaultUri: configVault.outputs.uri\n    publicUrl: consentSiteUrl\n"
        "    cpvClientId",
        "    configVaultUri: keyVault.outputs.uri\n    publicUrl: consentSiteUrl\n    cpvClientId",
        "BROKER_CONFIG_VAULT_URL is not the config vault's URI",
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
        "'@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/cpv-client-secret)'",
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
        "    value: '@Microsoft.KeyVault("
        "SecretUri=${configVaultUri}secrets/operator-client-secret)'",
        "name: 'BROKER_OPERATOR_CLIENT_SECRET'\n    value: 'hunter2'",
        "operator-client-secret",
    ),
    "operator_secret_read_from_the_token_vault": (
        "web_app",
        WEB,
        "name: 'BROKER_OPERATOR_CLIENT_SECRET'\n"
        "    value: '@Microsoft.KeyVault("
        "SecretUri=${configVaultUri}secrets/operator-client-secret)'",
        "name: 'BROKER_OPERATOR_CLIENT_SECRET'\n"
        "    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/operator-client-secret)'",
        "BROKER_OPERATOR_CLIENT_SECRET does not refer to the config vault",
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
    "function_app_made_officer_of_the_config_vault": (
        "roles",
        ROLES,
        "  name: guid(configVault.id, functionPrincipalId, keyVaultSecretsUser)\n"
        "  scope: configVault\n  properties: {\n    roleDefinitionId: keyVaultSecretsUser\n",
        "  name: guid(configVault.id, functionPrincipalId, keyVaultSecretsOfficer)\n"
        "  scope: configVault\n  properties: {\n    roleDefinitionId: keyVaultSecretsOfficer\n",
        "function identity gets Key Vault Secrets Officer on the config vault",
    ),
    "site_reads_the_config_from_the_token_vault": (
        "roles",
        ROLES,
        "  name: guid(configVault.id, webPrincipalId, keyVaultSecretsUser)\n  scope: configVault\n",
        "  name: guid(tokenVault.id, webPrincipalId, keyVaultSecretsUser)\n  scope: tokenVault\n",
        "missing role assignment: web app gets Key Vault Secrets User on the config vault",
    ),
    "consumers_granted_the_whole_token_vault_again": (
        "roles",
        ROLES,
        "param deployerPrincipalId string = ''\n",
        "param deployerPrincipalId string = ''\nparam consumerPrincipalIds array = []\n\n"
        "resource consumerSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = "
        "[for principalId in consumerPrincipalIds: {\n"
        "  name: guid(tokenVault.id, principalId, keyVaultSecretsUser)\n  scope: tokenVault\n"
        "  properties: {\n    roleDefinitionId: keyVaultSecretsUser\n"
        "    principalId: principalId\n  }\n}]\n",
        "unexpected role assignment: a list of principals (consumerPrincipalIds) gets Key Vault "
        "Secrets User on the token vault",
    ),
    "site_given_the_unused_queue_sender_role_again": (
        "roles",
        ROLES,
        "param deployerPrincipalId string = ''\n",
        "param deployerPrincipalId string = ''\n\n"
        "resource rotationsQueue "
        "'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {\n"
        "  name: '${storageAccountName}/default/rotations'\n}\n\n"
        "resource webQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n"
        "  name: guid(rotationsQueue.id, webPrincipalId, 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')\n"
        "  scope: rotationsQueue\n  properties: {\n    roleDefinitionId: "
        "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        "'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')\n    principalId: webPrincipalId\n  }\n}\n",
        "unexpected role assignment: web app gets Storage Queue Data Message Sender on the "
        "rotations queue",
    ),
    "roles_granted_to_the_web_app_instead_of_the_function_identity": (
        "roles",
        MAIN,
        "    functionPrincipalId: functionIdentity.outputs.principalId\n",
        "    functionPrincipalId: web.outputs.principalId\n",
        "missing role assignment: function identity",
    ),
    "deployer_granted_unconditionally": (
        "roles",
        ROLES,
        "resource deployerConfigOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = "
        "if (!empty(deployerPrincipalId)) {",
        "resource deployerConfigOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
        "conditional on a deployer",
    ),
    "secrets_officer_role_at_resource_group_scope": (
        "roles",
        ROLES,
        re.compile(
            r"(  name: guid\(tokenVault\.id, functionPrincipalId, keyVaultSecretsOfficer\)\n)"
            r"  scope: tokenVault\n"
        ),
        r"\1",
        "an unknown scope",
    ),
    "assignment_name_not_derived_from_principal": (
        "roles",
        ROLES,
        "name: guid(tokenVault.id, webPrincipalId, keyVaultSecretsOfficer)",
        "name: guid(tokenVault.id, keyVaultSecretsOfficer, 'web')",
        "guid(scope.id, principalId, roleDefinitionId)",
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
        "web app gets Storage Blob Data Owner on the broker-leases container",
    ),
    # Event Grid
    "expired_events_not_delivered": (
        "event_grid",
        EG,
        "        'Microsoft.KeyVault.SecretExpired'\n",
        "",
        "SecretExpired",
    ),
    "near_expiry_of_the_cpv_secret_filtered_out": (
        "event_grid",
        EG,
        "        'Microsoft.KeyVault.SecretExpired'\n      ]\n    }",
        "        'Microsoft.KeyVault.SecretExpired'\n      ]\n"
        "      subjectBeginsWith: 'rt-'\n    }",
        "config vault's events about cpv-client-secret are filtered out",
    ),
    "config_vault_not_watched": (
        "event_grid",
        MAIN,
        "    keyVaultName: configVault.outputs.name\n    functionAppName",
        "    keyVaultName: keyVault.outputs.name\n    functionAppName",
        "not each vault's events are delivered",
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
        "module configEventGrid 'modules/eventgrid.bicep'",
        "module configEventGrid 'modules/event-grid.bicep'",
        "missing modules/event-grid.bicep",
    ),
    "role_variable_misspelled": (
        "names",
        ROLES,
        "    roleDefinitionId: storageQueueDataContributor\n",
        "    roleDefinitionId: storageQueueDataContributr\n",
        "storageQueueDataContributr is not declared",
    ),
    "parameter_misspelled_in_a_condition": (
        "names",
        EG,
        "= if (deploySubscription) {",
        "= if (deploySubscriptions) {",
        "deploySubscriptions is not declared",
    ),
    # two vaults (issue 12): the token vault and the config vault, protected alike
    "one_vault_for_everything": (
        "vault_split",
        MAIN,
        "output BROKER_CONFIG_VAULT_URL string = configVault.outputs.uri",
        "output BROKER_CONFIG_VAULT_URL string = keyVault.outputs.uri",
        "exactly two vaults",
    ),
    "config_vault_open_to_every_network": (
        "vault_split",
        MAIN,
        re.compile(r"(module configVault [^}]*?)denyByDefault: usePrivateEndpoint"),
        r"\1denyByDefault: false",
        "the same denyByDefault",
    ),
    "config_vault_audit_log_elsewhere": (
        "vault_split",
        MAIN,
        re.compile(r"(module configVault [^}]*?)logAnalyticsWorkspaceId: [^\n]*"),
        r"\1logAnalyticsWorkspaceId: ''",
        "the same logAnalyticsWorkspaceId",
    ),
    "config_vault_output_missing": (
        "outputs",
        MAIN,
        re.compile(r"output BROKER_CONFIG_VAULT_URL [^\n]*\n"),
        "",
        "BROKER_CONFIG_VAULT_URL",
    ),
    # issue 17.1: azd version
    "no_required_azd_version": (
        "azd_version",
        YAML,
        'requiredVersions:\n  azd: ">= 1.23.4"\n',
        "",
        "requiredVersions",
    ),
    # issue 17.2: the Flex app's identity holds its roles before the app exists
    "function_app_back_on_a_system_assigned_identity": (
        "function_identity",
        FUNC,
        "  identity: {\n    type: 'UserAssigned'\n    userAssignedIdentities: {\n"
        "      '${identityId}': {}\n    }\n  }",
        "  identity: {\n    type: 'SystemAssigned'\n  }",
        "user-assigned identity alone",
    ),
    "function_app_deployed_before_its_roles": (
        "function_identity",
        MAIN,
        "  dependsOn: [\n    roles\n  ]\n",
        "",
        "race RBAC",
    ),
    "deployment_container_read_with_another_identity": (
        "function_identity",
        FUNC,
        "            type: 'UserAssignedIdentity'\n"
        "            userAssignedIdentityResourceId: identityId\n",
        "            type: 'SystemAssignedIdentity'\n",
        "deployment container",
    ),
    "key_vault_references_resolved_with_no_identity": (
        "function_identity",
        FUNC,
        "    keyVaultReferenceIdentity: identityId\n",
        "",
        "Key Vault references",
    ),
    "broker_sdk_without_the_identity": (
        "function_identity",
        FUNC,
        setting_block("AZURE_CLIENT_ID"),
        "",
        "AZURE_CLIENT_ID",
    ),
    "host_storage_without_the_identity": (
        "function_identity",
        FUNC,
        setting_block("AzureWebJobsStorage__clientId"),
        "",
        "AzureWebJobsStorage__clientId",
    ),
    # issue 17.3: a re-deployment after `azd down`
    "vault_cannot_be_recovered": (
        "key_vault",
        KV,
        "createMode: recover ? 'recover' : 'default'",
        "createMode: 'default'",
        "cannot be recovered",
    ),
    "config_vault_recovered_under_the_token_vault_name": (
        "vault_split",
        MAIN,
        "recover: contains(vaultsToRecover, names.configVault)",
        "recover: contains(vaultsToRecover, names.keyVault)",
        "not recovered by its own name",
    ),
    "recover_list_not_read_from_the_hook_variable": (
        "hooks",
        PARAMS,
        '"${RECOVER_KEY_VAULTS=}"',
        '"${RECOVER_VAULTS=}"',
        "RECOVER_KEY_VAULTS",
    ),
    "preprovision_hook_script_missing": (
        "hooks",
        YAML,
        "run: infra/hooks/preprovision.sh",
        "run: infra/hooks/pre-provision.sh",
        "does not run a sh script",
    ),
    "postdown_hook_dropped": (
        "hooks",
        YAML,
        re.compile(r"  postdown:\n(?:    .*\n)+"),
        "",
        "no postdown hook",
    ),
    "preprovision_forgets_the_event_subscriptions": (
        "hooks",
        PRE,
        re.compile(r"# 3\. the event subscriptions.*\Z", flags=re.S),
        "",
        "DEPLOY_EVENT_SUBSCRIPTION",
    ),
    # issue 17.6: telemetry, keyless
    "application_insights_takes_the_key": (
        "telemetry",
        MON,
        "DisableLocalAuth: true",
        "DisableLocalAuth: false",
        "DisableLocalAuth",
    ),
    "site_telemetry_without_entra_id": (
        "telemetry",
        WEB,
        setting_block("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
        "",
        "does not send telemetry with Entra ID",
    ),
    "distro_not_installed": (
        "telemetry",
        REQS,
        re.compile(r"^azure-monitor-opentelemetry==[^\n]*\n", flags=re.M),
        "",
        "azure-monitor-opentelemetry",
    ),
    "function_telemetry_not_as_its_identity": (
        "function_identity",
        FUNC,
        "value: 'ClientId=${identityClientId};Authorization=AAD'",
        "value: 'Authorization=AAD'",
        "ClientId",
    ),
    # issue 17.7: small but untrue
    "one_gunicorn_sync_worker": (
        "web_app",
        WEB,
        "--workers 2 --threads 4 ",
        "",
        "one sync worker",
    ),
    "restore_env_uploaded_to_the_function_app": (
        "uploads",
        FUNCIGNORE,
        "\n*_env\n",
        "\n",
        ".funcignore does not keep partner-token-broker_env",
    ),
    "local_env_file_uploaded_to_the_site": (
        "uploads",
        WEBAPPIGNORE,
        "\n.env\n",
        "\n",
        ".webappignore does not keep .env",
    ),
    "skip_reason_denies_the_http_trigger": (
        "checkov_skips",
        FUNC,
        re.compile(r"(#checkov:skip=CKV_AZURE_222):[^\n]*"),
        r"\1: Event Grid delivers to the function; the app has no HTTP-triggered functions",
        "no HTTP-triggered functions",
    ),
    # infra/README.md
    "readme_states_another_azd_version": (
        "readme",
        README,
        "**1.23.4 or later**",
        "**1.10.0 or later**",
        "azd version",
    ),
    "readme_forgets_the_redeployment": (
        "readme",
        README,
        "## Tearing down, and deploying again after `azd down`\n",
        "## Tearing down\n",
        "deploying again after `azd down`",
    ),
    "readme_grants_consumers_the_whole_vault": (
        "readme",
        README,
        'ServicePrincipal \\\n  --scope "$AZURE_KEY_VAULT_ID/secrets/rt-contoso"',
        'ServicePrincipal \\\n  --scope "$AZURE_KEY_VAULT_ID"',
        "grants a consumer one credential",
    ),
    "readme_sets_a_variable_nobody_reads": (
        "readme",
        README,
        'azd env set KEY_VAULT_PUBLIC_NETWORK_ACCESS Disabled',
        'azd env set KEY_VAULT_PUBLIC_ACCESS Disabled',
        "KEY_VAULT_PUBLIC_ACCESS",
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


def test_an_array_parameter_fed_from_the_environment_needs_an_azd_that_converts_it():
    main = TEMPLATES.texts[MAIN].replace(
        "param keyVaultAllowedIpRanges string = ''", "param keyVaultAllowedIpRanges array = []")
    old_azd = TEMPLATES.texts[YAML].replace('azd: ">= 1.23.4"', 'azd: ">= 1.10.0"')
    assert RULES["azd_version"](load({MAIN: main})) == []  # 1.23.4 converts it
    problems = RULES["azd_version"](load({MAIN: main, YAML: old_azd}))
    assert any("keyVaultAllowedIpRanges is given the text" in p for p in problems), problems
