// The rotation worker: a Python 3.11 Function App on Flex Consumption (FC1) that runs as a
// user-assigned identity, created and granted its roles before this app (main.bicep). With it
// the host reaches storage (no keys), Flex reads the deployment container, Key Vault references
// resolve, the broker's DefaultAzureCredential signs in (AZURE_CLIENT_ID) and the host sends
// telemetry (APPLICATIONINSIGHTS_AUTHENTICATION_STRING). The broker's own secrets arrive as Key
// Vault references into the config vault.
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

param applicationInsightsName string
param storageAccountName string
param deploymentContainerName string

@description('The token vault URI, with its trailing slash (https://<vault>.vault.azure.net/).')
param keyVaultUri string

@description('The config vault URI (the broker\'s own secrets), with its trailing slash.')
param configVaultUri string

@description('Where the consent site is reached (BROKER_PUBLIC_URL).')
param publicUrl string

param cpvClientId string = ''
param authorityHost string = 'https://login.microsoftonline.com'
param partnerCenterUrl string = 'https://api.partnercenter.microsoft.com'
param rotateAfterDays int = 10
param tokenLifetimeDays int = 90
param rotateSchedule string = '0 0 1 * * *'
param validateSchedule string = '0 30 5 * * *'

@secure()
param notifyWebhookUrl string = ''

@secure()
param smtpUrl string = ''
param notifyEmail string = ''

@description('Subnet delegated to Microsoft.App/environments for VNet integration; empty for none.')
param subnetId string = ''

// Flex Consumption's floor for the instance cap is 40. The vault's create limit (300 per 10 s)
// does not depend on it: every instance takes its create permits from one shared pacing blob
// in the storage account (broker/pacing.py), so 40 instances together stay under the limit.
// Each instance runs up to 12 queue messages at once (host.json batchSize 8 + newBatchThreshold
// 4, BROKER_ROTATE_CONCURRENCY below), and about 15 rotations in flight already fill the
// vault's 30 creates/s; more instances only wait for permits.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

// Flex Consumption sets FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION itself and
// rejects them as app settings; the runtime comes from functionAppConfig.runtime below.
var appSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'BROKER_VAULT_URL'
    value: keyVaultUri
  }
  {
    name: 'BROKER_CONFIG_VAULT_URL'
    value: configVaultUri
  }
  {
    name: 'BROKER_AUTHORITY_HOST'
    value: authorityHost
  }
  {
    name: 'BROKER_CPV_CLIENT_ID'
    value: cpvClientId
  }
  {
    name: 'BROKER_CPV_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/cpv-client-secret)'
  }
  {
    name: 'BROKER_SECRET_KEY'
    value: '@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/broker-secret-key)'
  }
  {
    name: 'BROKER_PUBLIC_URL'
    value: publicUrl
  }
  {
    name: 'BROKER_PARTNER_CENTER_URL'
    value: partnerCenterUrl
  }
  {
    name: 'BROKER_ROTATE_AFTER_DAYS'
    value: string(rotateAfterDays)
  }
  {
    name: 'BROKER_TOKEN_LIFETIME_DAYS'
    value: string(tokenLifetimeDays)
  }
  {
    name: 'BROKER_ROTATE_SCHEDULE'
    value: rotateSchedule
  }
  {
    name: 'BROKER_VALIDATE_SCHEDULE'
    value: validateSchedule
  }
  {
    name: 'BROKER_NOTIFY_WEBHOOK_URL'
    value: notifyWebhookUrl
  }
  {
    name: 'BROKER_SMTP_URL'
    value: smtpUrl
  }
  {
    name: 'BROKER_NOTIFY_EMAIL'
    value: notifyEmail
  }
  {
    // the vault's creates per 10 s for all instances together (shared pacing; Key Vault: 300)
    name: 'BROKER_VAULT_CREATES_PER_10S'
    value: '285'
  }
  {
    // queue messages one instance runs at once (host.json batchSize + newBatchThreshold); sizes
    // the SDK's connection pool and the Python worker's threads
    name: 'BROKER_ROTATE_CONCURRENCY'
    value: '12'
  }
  {
    name: 'PYTHON_THREADPOOL_THREAD_COUNT'
    value: '12'
  }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // #checkov:skip=CKV_AZURE_225: zone redundancy is an opt-in of Flex Consumption in some regions only; a rotation that misses a run is retried the next night and the token stays valid for 90 days
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // #checkov:skip=CKV_AZURE_222: public network access stays on: Event Grid delivers the vaults' expiry events to the function over its public endpoint, and the health function is an HTTP trigger that operators and probes reach with a function key (auth level FUNCTION)
  // #checkov:skip=CKV_AZURE_17: client certificates would make Event Grid deliveries fail; the Event Grid webhook is authenticated by the function's system key
  // #checkov:skip=CKV_AZURE_212: instance counts are managed by Flex Consumption (numberOfWorkers does not apply)
  // #checkov:skip=CKV_AZURE_213: Flex Consumption does not offer the App Service health check; the function app is watched through Application Insights
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'functions'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      appSettings: appSettings
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}


resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
