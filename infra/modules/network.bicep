// Optional private networking (usePrivateEndpoint): a VNet with a subnet for private endpoints
// and one delegated subnet per app for outbound VNet integration, and the
// privatelink.vaultcore.azure.net zone linked to the VNet, so that the vaults' names resolve to
// their private endpoints (modules/privateendpoint.bicep, one per vault) from both apps.
// The functions subnet is delegated to Microsoft.App/environments (Flex Consumption): that
// resource provider must be registered in the subscription (infra/hooks/preprovision.sh checks).
param virtualNetworkName string
param location string = resourceGroup().location
param tags object = {}

param addressPrefix string = '10.80.0.0/16'
param privateEndpointSubnetPrefix string = '10.80.0.0/24'
param functionSubnetPrefix string = '10.80.1.0/24'
param webSubnetPrefix string = '10.80.2.0/24'

var privateDnsZoneName = 'privatelink.vaultcore.azure.net'

resource subnetGuard 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${virtualNetworkName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: virtualNetworkName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
          networkSecurityGroup: {
            id: subnetGuard.id
          }
        }
      }
      {
        name: 'functions'
        properties: {
          addressPrefix: functionSubnetPrefix
          networkSecurityGroup: {
            id: subnetGuard.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'web'
        properties: {
          addressPrefix: webSubnetPrefix
          networkSecurityGroup: {
            id: subnetGuard.id
          }
          delegations: [
            {
              name: 'app-service'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
    ]
  }
}

resource privateDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: privateDnsZoneName
  location: 'global'
  tags: tags
}

resource privateDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: privateDnsZone
  name: '${virtualNetworkName}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

output virtualNetworkId string = vnet.id
output functionSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'functions')
output webSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'web')
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'private-endpoints')
output privateDnsZoneId string = privateDnsZone.id
