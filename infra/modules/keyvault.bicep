// One vault (main.bicep deploys two: the token vault and the config vault). RBAC only (no
// access policies), soft delete for 90 days, purge protection, and every data-plane call audited
// to Log Analytics.
param name string
param location string = resourceGroup().location
param tags object = {}

@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Deny by default at the firewall; true when the vault is reached through its private endpoint.')
param denyByDefault bool = false

@description('Public CIDR ranges let through the firewall when it denies by default.')
param allowedIpRanges array = []

@description('Recover the soft-deleted vault of this name (after `azd down`) instead of creating it.')
param recover bool = false

param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // #checkov:skip=CKV_AZURE_109: the firewall denies by default when the private endpoint is used; over the public network it must allow, because App Service outbound addresses are not trusted services. Access is RBAC-only either way.
    createMode: recover ? 'recover' : 'default'
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: denyByDefault ? 'Deny' : 'Allow'
      ipRules: [for range in allowedIpRanges: {
        value: range
      }]
    }
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
