"""Fixed identities of the seeded world, so tests and docs can name them.

Two tenants: the control-panel vendor's own tenant (`fabrikam`, where the CPV app, the vault and
the managed identity live) and the partner tenant `contoso` whose admins consent.
"""

CPV_TENANT_ID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CPV_TENANT_DOMAIN = "fabrikam.example"

PARTNER_TENANT_ID = "2a9c1e4b-7d3f-4b8a-9e6c-5f0d1c2b3a4e"
PARTNER_TENANT_DOMAIN = "contoso.example"

CPV_APP_ID = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
CPV_APP_NAME = "Fabrikam Partner Token Broker"

MANAGED_IDENTITY_CLIENT_ID = "b3c4d5e6-f7a8-4b9c-8d0e-1f2a3b4c5d6e"
MANAGED_IDENTITY_OBJECT_ID = "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f"

PASSWORD = "devstack"  # the dev-only password of every seeded user

# Well-known resource application ids (the same in every Azure tenant).
PARTNER_CENTER_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"
PARTNER_CENTER_RESOURCE = "https://api.partnercenter.microsoft.com"
VAULT_RESOURCE = "https://vault.azure.net"
GRAPH_RESOURCE = "https://graph.microsoft.com"
ARM_RESOURCE = "https://management.azure.com"

# Directory role template ids, as they appear in the `wids` claim.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
