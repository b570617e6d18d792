// The consent site (consent_web) on App Service for Linux, Python 3.11, with a system-assigned
// identity. Operators sign in through App Service Authentication in easyauth mode; the partner
// admin's landing page and the OAuth callback stay public (publicPaths). The site sends its
// requests, failures and logs to Application Insights itself (the Azure Monitor OpenTelemetry
// distro, consent_web/telemetry.py) with its identity: App Service's Python auto-instrumentation
// agent cannot authenticate with Entra ID, and local authentication is off.
param name string
param planName string
param planSku string = 'B1'
param location string = resourceGroup().location
param tags object = {}

param applicationInsightsName string
param storageAccountName string

@description('The token vault URI, with its trailing slash (https://<vault>.vault.azure.net/).')
param keyVaultUri string

@description('The config vault URI (the broker\'s own secrets), with its trailing slash.')
param configVaultUri string

@description('Where the consent site is reached (BROKER_PUBLIC_URL).')
param publicUrl string

@allowed([
  'easyauth'
  'entra'
])
param operatorAuth string = 'easyauth'
param operatorClientId string = ''
param operatorTenantId string = tenant().tenantId
param operatorGroupId string = ''
param operatorRole string = ''
param publicPaths array = [
  '/healthz'
  '/invite/*'
  '/consent/callback'
  '/consent/done'
  '/static/*'
]

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

@description('Subnet delegated to Microsoft.Web/serverFarms for VNet integration; empty for none.')
param subnetId string = ''

// two processes of four threads: a B1 instance has one core, and a request mostly waits on Key
// Vault and Entra ID (bench/site.py measures this shape)
var startupCommand = 'gunicorn --bind=0.0.0.0 --timeout 120 --workers 2 --threads 4 "consent_web:create_app()"'
var easyAuth = operatorAuth == 'easyauth'
// the Free and Shared tiers cannot keep a site warm
var alwaysOn = planSku != 'F1' && planSku != 'D1'

var appSettings = [
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
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
    value: 'Authorization=AAD'
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
    name: 'BROKER_OPERATOR_AUTH'
    value: operatorAuth
  }
  {
    name: 'BROKER_OPERATOR_TENANT_ID'
    value: operatorTenantId
  }
  {
    name: 'BROKER_OPERATOR_CLIENT_ID'
    value: operatorClientId
  }
  {
    name: 'BROKER_OPERATOR_GROUP_ID'
    value: operatorGroupId
  }
  {
    name: 'BROKER_OPERATOR_ROLE'
    value: operatorRole
  }
  // the operator app's client secret: the site reads it in entra mode, App Service
  // Authentication (under the name it is given below) in easyauth mode
  {
    name: 'BROKER_OPERATOR_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/operator-client-secret)'
  }
  {
    name: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${configVaultUri}secrets/operator-client-secret)'
  }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // #checkov:skip=CKV_AZURE_225: zone redundancy needs a Premium plan; the consent site is used a few times per partner per quarter and holds no state (webPlanSku can choose Premium)
  name: planName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: planSku
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // #checkov:skip=CKV_AZURE_222: the consent site must be public: partner admins open their invite link from anywhere; operator pages are behind App Service Authentication
  // #checkov:skip=CKV_AZURE_17: partner admins' browsers carry no client certificates; they authenticate to Entra ID with MFA instead
  // #checkov:skip=CKV_AZURE_212: one instance by default; the site is stateless (sessions are signed cookies, tokens live only in Key Vault) and restarts lose nothing
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'web'
  })
  kind: 'app,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      appSettings: appSettings
      linuxFxVersion: 'PYTHON|3.11'
      appCommandLine: startupCommand
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      alwaysOn: alwaysOn
      healthCheckPath: '/healthz'
      // Linux apps reach a private endpoint (and resolve Key Vault references through it) only
      // when all outbound traffic is routed into the VNet.
      vnetRouteAllEnabled: !empty(subnetId)
    }
  }
}


// Until an operator app registration is configured, every non-public path answers 401:
// the operator pages are closed, never open.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (easyAuth) {
  // #checkov:skip=CKV_AZURE_13: authsettingsV2 enables authentication with platform.enabled (set to true here); the check reads the legacy authsettings property enabled
  // #checkov:skip=CKV_AZURE_63: reads siteConfig properties of the web config section; this resource is the authsettingsV2 section
  // #checkov:skip=CKV_AZURE_65: reads siteConfig properties of the web config section; this resource is the authsettingsV2 section
  // #checkov:skip=CKV_AZURE_66: reads siteConfig properties of the web config section; this resource is the authsettingsV2 section
  // #checkov:skip=CKV_AZURE_80: reads siteConfig properties of the web config section; this resource is the authsettingsV2 section (and the site runs Python, not .NET)
  // #checkov:skip=CKV_AZURE_88: reads siteConfig properties of the web config section; this resource is the authsettingsV2 section (the site mounts no Azure Files share)
  // #checkov:skip=CKV_AZURE_222: reads the site's publicNetworkAccess; this resource is the authsettingsV2 section (see the skip on the site)
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: !empty(operatorClientId) ? 'RedirectToLoginPage' : 'Return401'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: publicPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: !empty(operatorClientId)
        registration: {
          clientId: operatorClientId
          clientSecretSettingName: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
          openIdIssuer: '${environment().authentication.loginEndpoint}${operatorTenantId}/v2.0'
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
