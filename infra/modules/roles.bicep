// Every role assignment of the broker, each on the narrowest scope that works. Nobody gets
// Owner, Contributor or Key Vault Administrator. The two apps manage the tokens in the token
// vault and only read the broker's own secrets in the config vault; the deployer (an operator)
// may manage both. Consumers get nothing here: an operator grants each one Key Vault Secrets
// User on the single secrets it may read (rt-<id>, and cs-<id> for an own-app credential), once
// they exist (infra/README.md, "Consumers"). Storage roles stop at the account, container or
// queue each identity needs; telemetry is sent with Entra ID, not with the instrumentation key.
param keyVaultName string
param configVaultName string
param storageAccountName string
param applicationInsightsName string

@description('The function app\'s user-assigned identity: granted before the app exists.')
param functionPrincipalId string
param webPrincipalId string
param deployerPrincipalId string = ''

// Key Vault Secrets Officer
var keyVaultSecretsOfficer = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
// Key Vault Secrets User
var keyVaultSecretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
// Storage Blob Data Owner
var storageBlobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
// Storage Blob Data Contributor
var storageBlobDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
// Storage Queue Data Contributor
var storageQueueDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
// Monitoring Metrics Publisher
var monitoringMetricsPublisher = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')

resource tokenVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource configVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: configVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource leasesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/broker-leases'
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The rotation worker writes each renewed token as a new secret version.
resource functionSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tokenVault.id, functionPrincipalId, keyVaultSecretsOfficer)
  scope: tokenVault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The worker reads the CPV secret and the signing key (Key Vault references and the SDK).
resource functionConfigReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(configVault.id, functionPrincipalId, keyVaultSecretsUser)
  scope: configVault
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The consent site writes the placeholder and the consented token.
resource webSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tokenVault.id, webPrincipalId, keyVaultSecretsOfficer)
  scope: tokenVault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The site reads the signing key, the CPV secret and the operator app's secret.
resource webConfigReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(configVault.id, webPrincipalId, keyVaultSecretsUser)
  scope: configVault
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host keeps its state and the Flex deployment package in blobs of its account.
resource functionBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: storageBlobDataOwner
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The worker fans rotations out to the rotations queue, consumes it and poisons failures.
resource functionQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: storageQueueDataContributor
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The consent site takes the per-credential lease before it writes a token: that container only.
// ("Rotate now" rotates in the request under that lease; the site sends nothing to a queue.)
resource webLeaseContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(leasesContainer.id, webPrincipalId, storageBlobDataContributor)
  scope: leasesContainer
  properties: {
    roleDefinitionId: storageBlobDataContributor
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights takes telemetry only from Entra identities (local auth is off).
resource functionTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, functionPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: monitoringMetricsPublisher
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource webTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, webPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: monitoringMetricsPublisher
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The operator who ran azd can use the broker CLI (credentials add, import, rotate) directly.
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(tokenVault.id, deployerPrincipalId, keyVaultSecretsOfficer)
  scope: tokenVault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: deployerPrincipalId
  }
}

// ... and stores the broker's own secrets (the one-time steps of infra/README.md).
resource deployerConfigOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(configVault.id, deployerPrincipalId, keyVaultSecretsOfficer)
  scope: configVault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: deployerPrincipalId
  }
}
