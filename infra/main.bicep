// The partner token broker in one resource group: two Key Vaults (the token vault, the only
// datastore of tokens, and the config vault with the broker's own secrets, which no consumer can
// read), a Flex Consumption Function App that renews the tokens, an App Service site for the
// consent pages, a keyless storage account for leases and the rotation queue, and Event Grid on
// both vaults. `azd up` provisions this file, then deploys the code; infra/README.md is the guide.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: feeds the resource token and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@allowed([
  'test'
  'production'
])
@description('The Partner Center environment this broker serves: tagged on every resource, sets log retention.')
param brokerEnvironment string = 'test'

// Names. Empty means derived from the abbreviation and the resource token.
param resourceGroupName string = ''
param keyVaultName string = ''
param configVaultName string = ''
param functionIdentityName string = ''
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param functionPlanName string = ''
param functionAppName string = ''
param webPlanName string = ''
param webAppName string = ''
param eventGridTopicName string = ''
param configEventGridTopicName string = ''
param virtualNetworkName string = ''

// Network.
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access to both vaults. Set Disabled together with usePrivateEndpoint.')
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Put both vaults behind private endpoints in a new VNet and integrate both apps with it (needs the Microsoft.App resource provider, see infra/README.md).')
param usePrivateEndpoint bool = false

// A comma-separated string, not an array: azd substitutes `${VAR}` in main.parameters.json as
// text, and only recent azd releases turn that text into an array.
@description('Public IP ranges (CIDR, comma-separated) still allowed through the vaults\' firewall when the private endpoint is used.')
param keyVaultAllowedIpRanges string = ''

// Consent site.
@description('App Service plan SKU for the consent site.')
param webPlanSku string = 'B1'

@allowed([
  'easyauth'
  'entra'
])
@description('How operators sign in: App Service Authentication in front of the site, or the app itself.')
param operatorAuth string = 'easyauth'

@description('Client id of the operator sign-in app registration (easyauth). Empty keeps operator pages closed (401).')
param operatorClientId string = ''

@description('Tenant of the operator sign-in app registration.')
param operatorTenantId string = tenant().tenantId

@description('Object id of the Entra group whose members are operators; empty: anyone the operator app lets in.')
param operatorGroupId string = ''

@description('App role of the operator app that makes a user an operator; empty: not checked.')
param operatorRole string = ''

@description('Paths reachable without operator sign-in: the partner admin pages, the OAuth callback, health.')
param publicPaths array = [
  '/healthz'
  '/invite/*'
  '/consent/callback'
  '/consent/done'
  '/static/*'
]

@description('Public URL of the consent site when it has a custom domain; empty means its azurewebsites.net address.')
param publicUrl string = ''

// Broker settings (the contract in ARCHITECTURE.md).
@description('Application (client) id of the CPV app registration.')
param cpvClientId string = ''
param authorityHost string = 'https://login.microsoftonline.com'
param partnerCenterUrl string = 'https://api.partnercenter.microsoft.com'
param rotateAfterDays int = 10
param tokenLifetimeDays int = 90

@description('NCRONTAB schedule of the nightly due-scan that queues rotations (six fields, UTC).')
param rotateSchedule string = '0 0 1 * * *'

@description('NCRONTAB schedule of the daily end-to-end validation of every active credential.')
param validateSchedule string = '0 30 5 * * *'

@secure()
@description('Webhook for alerts. May itself be a Key Vault reference: @Microsoft.KeyVault(SecretUri=...).')
param notifyWebhookUrl string = ''

@secure()
@description('smtp:// or smtps:// URL for alert mail. May itself be a Key Vault reference.')
param smtpUrl string = ''
param notifyEmail string = ''

// Access. Consumers get no role here: an operator grants each one Key Vault Secrets User on
// the single secrets it may read (infra/README.md, "Consumers"), once those secrets exist.
@description('Object id of whoever runs azd (AZURE_PRINCIPAL_ID); gets Key Vault Secrets Officer on both vaults when grantDeployerAccess.')
param deployerPrincipalId string = ''

@description('Let the deployer manage secrets, so the operator can store the broker\'s secrets and run the broker CLI.')
param grantDeployerAccess bool = true

// The event subscriptions target the function secret_near_expiry, which exists only after the
// code is deployed: azd provisions before it deploys, and Event Grid validates an AzureFunction
// endpoint when the subscription is created, so a first `azd up` would fail with them. Leave this
// false for the first run, then `azd env set DEPLOY_EVENT_SUBSCRIPTION true && azd provision`.
// The postdown hook sets it back to false, and the preprovision hook stops a run that would
// create them before the function exists (infra/hooks/).
@description('Create the Event Grid subscriptions (needs the function code deployed first).')
param deployEventSubscription bool = false

// `azd down` leaves both vaults soft-deleted (purge protection: 90 days, the tokens inside), and
// their names stay taken. The preprovision hook finds them and asks for them to be recovered:
// the names listed here are deployed with createMode 'recover', which brings them back with
// every secret in them. The postprovision hook empties the list again.
@description('Comma-separated names of soft-deleted vaults of this environment to recover (set by infra/hooks/preprovision.sh).')
param recoverKeyVaults string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  'broker-environment': brokerEnvironment
}

var names = {
  resourceGroup: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  keyVault: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
  configVault: !empty(configVaultName) ? configVaultName : '${abbrs.keyVaultVaults}cfg-${resourceToken}'
  functionIdentity: !empty(functionIdentityName) ? functionIdentityName : '${abbrs.managedIdentityUserAssignedIdentities}func-${resourceToken}'
  storage: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
  logAnalytics: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
  applicationInsights: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
  functionPlan: !empty(functionPlanName) ? functionPlanName : '${abbrs.webServerFarms}func-${resourceToken}'
  functionApp: !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}${resourceToken}'
  webPlan: !empty(webPlanName) ? webPlanName : '${abbrs.webServerFarms}web-${resourceToken}'
  webApp: !empty(webAppName) ? webAppName : '${abbrs.webSitesAppService}${resourceToken}'
  eventGridTopic: !empty(eventGridTopicName) ? eventGridTopicName : '${abbrs.eventGridSystemTopics}${resourceToken}'
  configEventGridTopic: !empty(configEventGridTopicName) ? configEventGridTopicName : '${abbrs.eventGridSystemTopics}cfg-${resourceToken}'
  virtualNetwork: !empty(virtualNetworkName) ? virtualNetworkName : '${abbrs.networkVirtualNetworks}${resourceToken}'
}
var allowedIpRanges = empty(keyVaultAllowedIpRanges) ? [] : split(replace(keyVaultAllowedIpRanges, ' ', ''), ',')
var vaultsToRecover = split(replace(recoverKeyVaults, ' ', ''), ',')

// Known before either app exists, so both get it as BROKER_PUBLIC_URL. The default host name
// of an App Service site is <name>.azurewebsites.net in Azure's public cloud; set publicUrl for
// a custom domain or another cloud.
var consentSiteUrl = !empty(publicUrl) ? publicUrl : 'https://${names.webApp}.azurewebsites.net'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
    retentionInDays: brokerEnvironment == 'production' ? 90 : 30
  }
}

// The token vault: rt-<id> and cs-<id> only. The apps write it; consumers are granted single
// secrets of it.
module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    publicNetworkAccess: keyVaultPublicNetworkAccess
    denyByDefault: usePrivateEndpoint
    allowedIpRanges: allowedIpRanges
    recover: contains(vaultsToRecover, names.keyVault)
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

// The config vault: broker-secret-key, cpv-client-secret, operator-client-secret. The apps read
// it (through Key Vault references); no consumer gets any role on it.
module configVault 'modules/keyvault.bicep' = {
  name: 'configvault'
  scope: rg
  params: {
    name: names.configVault
    location: location
    tags: tags
    publicNetworkAccess: keyVaultPublicNetworkAccess
    denyByDefault: usePrivateEndpoint
    allowedIpRanges: allowedIpRanges
    recover: contains(vaultsToRecover, names.configVault)
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module network 'modules/network.bicep' = if (usePrivateEndpoint) {
  name: 'network'
  scope: rg
  params: {
    virtualNetworkName: names.virtualNetwork
    location: location
    tags: tags
  }
}

module keyVaultEndpoint 'modules/privateendpoint.bicep' = if (usePrivateEndpoint) {
  name: 'keyvault-endpoint'
  scope: rg
  params: {
    name: '${abbrs.networkPrivateEndpoints}${keyVault.outputs.name}'
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
    subnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: network.outputs.privateDnsZoneId
  }
}

module configVaultEndpoint 'modules/privateendpoint.bicep' = if (usePrivateEndpoint) {
  name: 'configvault-endpoint'
  scope: rg
  params: {
    name: '${abbrs.networkPrivateEndpoints}${configVault.outputs.name}'
    location: location
    tags: tags
    keyVaultName: configVault.outputs.name
    subnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: network.outputs.privateDnsZoneId
  }
}

// The function app's identity exists, and holds its roles, before the app does: Flex
// Consumption reads the deployment container with it as soon as `azd deploy` runs, and a
// system-assigned identity granted after the app would race RBAC propagation (403).
module functionIdentity 'modules/identity.bicep' = {
  name: 'function-identity'
  scope: rg
  params: {
    name: names.functionIdentity
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${take(names.functionApp, 32)}-${take(resourceToken, 7)}'
  }
}

module web 'modules/webapp.bicep' = {
  name: 'web'
  scope: rg
  params: {
    name: names.webApp
    planName: names.webPlan
    planSku: webPlanSku
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    storageAccountName: storage.outputs.name
    keyVaultUri: keyVault.outputs.uri
    configVaultUri: configVault.outputs.uri
    publicUrl: consentSiteUrl
    operatorAuth: operatorAuth
    operatorClientId: operatorClientId
    operatorTenantId: operatorTenantId
    operatorGroupId: operatorGroupId
    operatorRole: operatorRole
    publicPaths: publicPaths
    cpvClientId: cpvClientId
    authorityHost: authorityHost
    partnerCenterUrl: partnerCenterUrl
    rotateAfterDays: rotateAfterDays
    tokenLifetimeDays: tokenLifetimeDays
    rotateSchedule: rotateSchedule
    validateSchedule: validateSchedule
    notifyWebhookUrl: notifyWebhookUrl
    smtpUrl: smtpUrl
    notifyEmail: notifyEmail
    subnetId: usePrivateEndpoint ? network.outputs.webSubnetId : ''
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  // its identity's roles first (storage, vaults, telemetry): see functionIdentity
  dependsOn: [
    roles
  ]
  params: {
    name: names.functionApp
    planName: names.functionPlan
    location: location
    tags: tags
    identityId: functionIdentity.outputs.id
    identityClientId: functionIdentity.outputs.clientId
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    keyVaultUri: keyVault.outputs.uri
    configVaultUri: configVault.outputs.uri
    publicUrl: consentSiteUrl
    cpvClientId: cpvClientId
    authorityHost: authorityHost
    partnerCenterUrl: partnerCenterUrl
    rotateAfterDays: rotateAfterDays
    tokenLifetimeDays: tokenLifetimeDays
    rotateSchedule: rotateSchedule
    validateSchedule: validateSchedule
    notifyWebhookUrl: notifyWebhookUrl
    smtpUrl: smtpUrl
    notifyEmail: notifyEmail
    subnetId: usePrivateEndpoint ? network.outputs.functionSubnetId : ''
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    configVaultName: configVault.outputs.name
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    functionPrincipalId: functionIdentity.outputs.principalId
    webPrincipalId: web.outputs.principalId
    deployerPrincipalId: grantDeployerAccess ? deployerPrincipalId : ''
  }
}

// Near-expiry and expired events of both vaults go to the function secret_near_expiry: a
// refresh token that stopped rotating, a partner app's client secret (cs-<id>), and the
// broker's own CPV and operator secrets, whose expiry would stop every credential at once.
module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    name: names.eventGridTopic
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
    functionAppName: functionApp.outputs.name
    deploySubscription: deployEventSubscription
  }
}

module configEventGrid 'modules/eventgrid.bicep' = {
  name: 'configeventgrid'
  scope: rg
  params: {
    name: names.configEventGridTopic
    location: location
    tags: tags
    keyVaultName: configVault.outputs.name
    functionAppName: functionApp.outputs.name
    deploySubscription: deployEventSubscription
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_KEY_VAULT_ID string = keyVault.outputs.id
output BROKER_VAULT_URL string = keyVault.outputs.uri
output AZURE_CONFIG_VAULT_NAME string = configVault.outputs.name
output BROKER_CONFIG_VAULT_URL string = configVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = functionIdentity.outputs.principalId
output AZURE_WEB_PRINCIPAL_ID string = web.outputs.principalId
output AZURE_WEB_APP_NAME string = web.outputs.name
output CONSENT_SITE_URL string = consentSiteUrl
output REDIRECT_URI string = '${consentSiteUrl}/consent/callback'
