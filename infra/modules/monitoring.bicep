// Log Analytics for the vaults' audit logs and a workspace-based Application Insights for both
// apps. Application Insights accepts only Entra-authenticated telemetry (DisableLocalAuth): the
// apps send with their managed identities (Monitoring Metrics Publisher, modules/roles.bicep), so
// the connection string in their settings is no credential.
param logAnalyticsName string
param applicationInsightsName string
param location string = resourceGroup().location
param tags object = {}

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output logAnalyticsWorkspaceId string = workspace.id
output applicationInsightsName string = applicationInsights.name
