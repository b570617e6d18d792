// Key Vault publishes SecretNearExpiry (30 days before expires_on) and SecretExpired. Each
// rt-<id> version expires 90 days after it was obtained, so these events are the vault's own
// alarm that rotation has stalled; they go to the function secret_near_expiry.
param name string
param location string = resourceGroup().location
param tags object = {}
param keyVaultName string
param functionAppName string

@description('Create the subscription; the target function must already be deployed (see main.bicep).')
param deploySubscription bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource nearExpiry 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deploySubscription) {
  parent: topic
  name: 'rt-near-expiry'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/secret_near_expiry'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    // the subject of a Key Vault event is the secret name, so this keeps only refresh tokens
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
      subjectBeginsWith: 'rt-'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output topicName string = topic.name
