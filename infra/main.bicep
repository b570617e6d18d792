// The partner token broker in one resource group: Key Vault (the only datastore), a Flex
// Consumption Function App that renews the tokens, an App Service site for the consent pages,
// a keyless storage account for leases and the rotation queue, and Event Grid on the vault.
// `azd up` provisions this file, then deploys the code; infra/README.md is the guide.
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
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param functionPlanName string = ''
param functionAppName string = ''
param webPlanName string = ''
param webAppName string = ''
param eventGridTopicName string = ''
param virtualNetworkName string = ''
param privateEndpointName string = ''

// Network.
@allowed([
  'Enabled'
  'Disabled'
])
@description('Public network access to the vault. Set Disabled together with usePrivateEndpoint.')
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Put the vault behind a private endpoint in a new VNet and integrate both apps with it.')
param usePrivateEndpoint bool = false

@description('Public IP ranges (CIDR) still allowed through the vault firewall when the private endpoint is used.')
param keyVaultAllowedIpRanges array = []

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

// Access.
@description('Object ids of the consumers (apps, groups) that may read tokens: they get Key Vault Secrets User.')
param consumerPrincipalIds array = []

@description('Object id of whoever runs azd (AZURE_PRINCIPAL_ID); gets Key Vault Secrets Officer when grantDeployerAccess.')
param deployerPrincipalId string = ''

@description('Let the deployer manage secrets, so the operator can run the broker CLI against this vault.')
param grantDeployerAccess bool = true

// The event subscription targets the function secret_near_expiry, which exists only after the
// code is deployed: azd provisions before it deploys, and Event Grid validates an AzureFunction
// endpoint when the subscription is created, so a first `azd up` would fail with it. Leave this
// false for the first run, then `azd env set DEPLOY_EVENT_SUBSCRIPTION true && azd provision`.
@description('Create the Event Grid subscription (needs the function code deployed first).')
param deployEventSubscription bool = false

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  'broker-environment': brokerEnvironment
}

var names = {
  resourceGroup: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  keyVault: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
  storage: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
  logAnalytics: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
  applicationInsights: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
  functionPlan: !empty(functionPlanName) ? functionPlanName : '${abbrs.webServerFarms}func-${resourceToken}'
  functionApp: !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}${resourceToken}'
  webPlan: !empty(webPlanName) ? webPlanName : '${abbrs.webServerFarms}web-${resourceToken}'
  webApp: !empty(webAppName) ? webAppName : '${abbrs.webSitesAppService}${resourceToken}'
  eventGridTopic: !empty(eventGridTopicName) ? eventGridTopicName : '${abbrs.eventGridSystemTopics}${resourceToken}'
  virtualNetwork: !empty(virtualNetworkName) ? virtualNetworkName : '${abbrs.networkVirtualNetworks}${resourceToken}'
  privateEndpoint: !empty(privateEndpointName) ? privateEndpointName : '${abbrs.networkPrivateEndpoints}kv-${resourceToken}'
}

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

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    publicNetworkAccess: keyVaultPublicNetworkAccess
    denyByDefault: usePrivateEndpoint
    allowedIpRanges: keyVaultAllowedIpRanges
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module network 'modules/network.bicep' = if (usePrivateEndpoint) {
  name: 'network'
  scope: rg
  params: {
    virtualNetworkName: names.virtualNetwork
    privateEndpointName: names.privateEndpoint
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
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
  params: {
    name: names.functionApp
    planName: names.functionPlan
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    keyVaultUri: keyVault.outputs.uri
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
    storageAccountName: storage.outputs.name
    functionPrincipalId: functionApp.outputs.principalId
    webPrincipalId: web.outputs.principalId
    consumerPrincipalIds: consumerPrincipalIds
    deployerPrincipalId: grantDeployerAccess ? deployerPrincipalId : ''
  }
}

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

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output BROKER_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_WEB_APP_NAME string = web.outputs.name
output CONSENT_SITE_URL string = consentSiteUrl
output REDIRECT_URI string = '${consentSiteUrl}/consent/callback'
