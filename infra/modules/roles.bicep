// Every role assignment of the broker, each on the narrowest scope that works. Nobody gets
// Owner, Contributor or Key Vault Administrator: the apps and the deployer manage secrets only in
// this vault, consumers can only read them, and storage roles stop at the account, container or
// queue each identity needs.
param keyVaultName string
param storageAccountName string
param functionPrincipalId string
param webPrincipalId string
param consumerPrincipalIds array = []
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
// Storage Queue Data Message Sender
var storageQueueDataMessageSender = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource leasesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/broker-leases'
}

resource rotationsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  name: '${storageAccountName}/default/rotations'
}

// The rotation worker writes each renewed token as a new secret version.
resource functionSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The consent site writes the placeholder and the consented token.
resource webSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, webPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
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
resource webLeaseContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(leasesContainer.id, webPrincipalId, storageBlobDataContributor)
  scope: leasesContainer
  properties: {
    roleDefinitionId: storageBlobDataContributor
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The consent site only ever enqueues a rotation ("rotate now"): send, on that queue only.
resource webQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rotationsQueue.id, webPrincipalId, storageQueueDataMessageSender)
  scope: rotationsQueue
  properties: {
    roleDefinitionId: storageQueueDataMessageSender
    principalId: webPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Consumers resolve tokens by secret identifier URL: read-only.
resource consumerSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in consumerPrincipalIds: {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: principalId
  }
}]

// The operator who ran azd can use the broker CLI (credentials add, import, rotate) directly.
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: deployerPrincipalId
  }
}
