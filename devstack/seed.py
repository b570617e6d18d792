"""Fixed identities of the seeded world, so tests and docs can name them.

Two tenants: the control-panel vendor's own tenant (`fabrikam`, where the CPV app, the vaults and
the managed identities live) and the partner tenant `contoso` whose admins consent.
"""

from dataclasses import dataclass

CPV_TENANT_ID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CPV_TENANT_DOMAIN = "fabrikam.example"

PARTNER_TENANT_ID = "2a9c1e4b-7d3f-4b8a-9e6c-5f0d1c2b3a4e"
PARTNER_TENANT_DOMAIN = "contoso.example"

CPV_APP_ID = "8a4f0c21-3b5d-4e7f-9a1c-2d3e4f5a6b7c"
CPV_APP_NAME = "Fabrikam Partner Token Broker"

# the system-assigned identity: what `DefaultAzureCredential()` gets with no AZURE_CLIENT_ID;
# it plays the operator and is Key Vault Administrator on both vaults
MANAGED_IDENTITY_CLIENT_ID = "b3c4d5e6-f7a8-4b9c-8d0e-1f2a3b4c5d6e"
MANAGED_IDENTITY_OBJECT_ID = "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f"

# --- Azure resources: where the vaults and the user-assigned identities live ------------------

SUBSCRIPTION_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
RESOURCE_GROUP = "rg-broker-devstack"
LOCATION = "devstack"
TOKEN_VAULT_NAME = "devvault"  # BROKER_VAULT_URL: rt-<id> and cs-<id> only
CONFIG_VAULT_NAME = "devconfig"  # BROKER_CONFIG_VAULT_URL: the broker's own secrets
# devstack's short name of each vault app (`keyvault.create_app(ctx, name)`) -> its Azure name
VAULT_NAMES = {"main": TOKEN_VAULT_NAME, "config": CONFIG_VAULT_NAME}


def vault_name(app_name: str) -> str:
    return VAULT_NAMES.get(app_name, app_name)
# the broker's own secrets, kept in the config vault where no consumer has a role
SIGNING_KEY_SECRET = "broker-secret-key"
CPV_SECRET_NAME = "cpv-client-secret"
OPERATOR_SECRET_NAME = "operator-client-secret"


def vault_scope(vault_name: str) -> str:
    """The ARM id of a vault: the scope of a vault-wide role assignment."""
    return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
            f"/providers/Microsoft.KeyVault/vaults/{vault_name}")


@dataclass(frozen=True)
class Identity:
    """A managed identity: its service principal's client (app) id and object (principal) id."""

    key: str  # names its env variables: DEVSTACK_<KEY>_CLIENT_ID / _OBJECT_ID
    name: str
    client_id: str
    object_id: str
    user_assigned: bool = True

    @property
    def resource_id(self) -> str:
        """`mi_res_id`: the ARM id of a user-assigned identity (App Service selects by it)."""
        return (f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}")


SYSTEM_IDENTITY = Identity("OPERATOR", "broker-devstack", MANAGED_IDENTITY_CLIENT_ID,
                           MANAGED_IDENTITY_OBJECT_ID, user_assigned=False)
ROTATION_IDENTITY = Identity("ROTATION", "id-broker-rotation",
                             "1a2b3c4d-0001-4e5f-8a9b-0c1d2e3f4a01",
                             "2b3c4d5e-0001-4f6a-9b0c-1d2e3f4a5b01")
SITE_IDENTITY = Identity("SITE", "id-broker-site",
                         "1a2b3c4d-0002-4e5f-8a9b-0c1d2e3f4a02",
                         "2b3c4d5e-0002-4f6a-9b0c-1d2e3f4a5b02")
CONSUMER_A_IDENTITY = Identity("CONSUMER_A", "id-consumer-a",
                               "1a2b3c4d-000a-4e5f-8a9b-0c1d2e3f4a0a",
                               "2b3c4d5e-000a-4f6a-9b0c-1d2e3f4a5b0a")
CONSUMER_B_IDENTITY = Identity("CONSUMER_B", "id-consumer-b",
                               "1a2b3c4d-000b-4e5f-8a9b-0c1d2e3f4a0b",
                               "2b3c4d5e-000b-4f6a-9b0c-1d2e3f4a5b0b")
IDENTITIES = (SYSTEM_IDENTITY, ROTATION_IDENTITY, SITE_IDENTITY, CONSUMER_A_IDENTITY,
              CONSUMER_B_IDENTITY)

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

# --- Entra ID emulator: the seeded directory (devstack/entra) ---------------------------------

# Microsoft's first-party resource app ids (the same in every tenant).
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
# delegated scopes as a client asks for them
PARTNER_CENTER_SCOPE = PARTNER_CENTER_RESOURCE + "/user_impersonation"
PARTNER_CENTER_DEFAULT_SCOPE = PARTNER_CENTER_RESOURCE + "/.default"
GRAPH_USER_READ_SCOPE = GRAPH_RESOURCE + "/User.Read"
ARM_SCOPE = ARM_RESOURCE + "/user_impersonation"
# the `wids` entry every member user carries (the built-in "User" role template)
MEMBER_USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"

# Partner tenant contoso: the Partner Center "AdminAgents" security group and its users.
PARTNER_TENANT_NAME = "Contoso Ltd"
ADMIN_AGENTS_GROUP_ID = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
PARTNER_ADMIN_UPN = "admin@contoso.example"  # Global Administrator + Admin Agent, MFA registered
PARTNER_ADMIN_OBJECT_ID = "a1b2c3d4-0001-4a00-8000-000000000001"
PARTNER_AGENT_UPN = "agent@contoso.example"  # Admin Agent, no directory role, MFA registered
PARTNER_AGENT_OBJECT_ID = "a1b2c3d4-0002-4a00-8000-000000000002"
PARTNER_NOMFA_UPN = "nomfa@contoso.example"  # Global Administrator + Admin Agent, no MFA method
PARTNER_NOMFA_OBJECT_ID = "a1b2c3d4-0003-4a00-8000-000000000003"
PARTNER_USER_UPN = "user@contoso.example"  # no roles, not an Admin Agent, MFA registered
PARTNER_USER_OBJECT_ID = "a1b2c3d4-0004-4a00-8000-000000000004"

# The partner's own app registration in contoso (own-app mode): single-tenant, two secrets.
PARTNER_APP_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
PARTNER_APP_NAME = "Contoso Partner Center Integration"
PARTNER_APP_SECRET = "pc18Q~devstackPartnerAppSecret.valid2099"
PARTNER_APP_SECRET_EXPIRES = "2099-12-31T23:59:59Z"
PARTNER_APP_EXPIRED_SECRET = "pc28Q~devstackPartnerAppSecret.expired24"
PARTNER_APP_EXPIRED_SECRET_EXPIRES = "2024-06-30T00:00:00Z"

# The vendor tenant fabrikam: the broker's operators sign in to the consent site here.
CPV_TENANT_NAME = "Fabrikam CPV"
OPERATOR_UPN = "operator@fabrikam.example"
OPERATOR_OBJECT_ID = "f1e2d3c4-0001-4b00-9000-000000000001"
OPERATOR_GROUP_ID = "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e"  # "BrokerOperators"
OPERATOR_GROUP_NAME = "BrokerOperators"
OPERATOR_APP_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
OPERATOR_APP_NAME = "Fabrikam Token Broker Operators"
OPERATOR_APP_SECRET = "op18Q~devstackOperatorAppSecret.valid209"

# Redirect URIs registered on the apps; loopback ones match any port, as in Entra.
CONSENT_REDIRECT_URIS = (
    "http://localhost/consent/callback",
    "http://127.0.0.1/consent/callback",
    "https://localhost/consent/callback",
)
OPERATOR_REDIRECT_URIS = ("http://localhost/auth/callback", "http://127.0.0.1/auth/callback")
