// Key Vault publishes SecretNearExpiry (30 days before expires_on) and SecretExpired; this
// module subscribes the function secret_near_expiry to one vault's events, and main.bicep uses
// it for both vaults. In the token vault, each rt-<id> version expires 90 days after it was
// obtained, so an event is the vault's own alarm that rotation has stalled, and cs-<id> carries
// a partner app's client secret expiry; in the config vault, cpv-client-secret and
// operator-client-secret carry the expiry of the broker's own app secrets. The function tells a
// human what to do about each; no secret is filtered out here.
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
  name: 'secret-expiry'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/secret_near_expiry'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    // every secret of the vault: the subject of a Key Vault event is the secret's name
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output topicName string = topic.name
