// Keyless storage for the Functions host, the Flex deployment package, the per-credential
// leases (container broker-leases) and the rotation queue. Nothing here ever holds a token.
param name string
param location string = resourceGroup().location
param tags object = {}
param deploymentContainerName string

@description('Replication. Leases and queue messages are transient; the vault is the only datastore.')
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // #checkov:skip=CKV_AZURE_35: the Flex Consumption host reaches its storage over the public endpoint unless VNet-integrated, and App Service is not a trusted service that a deny-by-default firewall lets through; shared keys are off, so only Entra identities with a data role get in
  // #checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public network access stays on for the Functions host, authentication is Entra ID only (allowSharedKeyAccess false, no anonymous blob access)
  // #checkov:skip=CKV_AZURE_206: LRS by default on purpose: leases and queue messages are transient and the vault is the only datastore, so losing this account loses no token; the skuName parameter chooses ZRS or GRS
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource leasesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'broker-leases'
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource rotationsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'rotations'
}

resource rotationsPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'rotations-poison'
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output deploymentContainerName string = deploymentContainerName
