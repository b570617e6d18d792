"""infra/ and devstack agree on who may read what: the Key Vault roles the templates give the
rotation app and the consent site are exactly the ones devstack enforces for their identities
(so the least-privilege tests against devstack test what Azure will run), consumers get no vault
role from either, and the secrets the apps' settings point at are the config vault's names the
broker reads."""

from __future__ import annotations

from devstack import rbac, seed
from tests.infra.rules import VAULT_SECRETS, load, role_assignments

TEMPLATES = load()
HOLDERS = {seed.ROTATION_IDENTITY.object_id: "function identity",
           seed.SITE_IDENTITY.object_id: "web app"}
VAULTS = {seed.vault_scope(seed.TOKEN_VAULT_NAME).lower(): "token vault",
          seed.vault_scope(seed.CONFIG_VAULT_NAME).lower(): "config vault"}


def devstack_grants() -> set[tuple[str, str, str]]:
    """devstack's seeded assignments of the two apps, in the words of tests/infra/rules.py."""
    return {(HOLDERS[a.principal_id], rbac.ROLES[a.role_id].name, VAULTS[a.scope.lower()])
            for a in rbac.seeded() if a.principal_id in HOLDERS}


def template_grants(templates=TEMPLATES) -> set[tuple[str, str, str]]:
    return {line for line in role_assignments(templates)
            if line[0] in ("function identity", "web app") and line[2].endswith(" vault")}


def test_the_apps_hold_the_same_vault_roles_in_azure_and_in_devstack():
    assert template_grants() == devstack_grants()
    assert ("web app", "Key Vault Secrets User", "config vault") in template_grants()


def test_a_template_that_gives_the_site_more_than_devstack_does_is_caught():
    roles = TEMPLATES.texts["modules/roles.bicep"]
    old = ("  name: guid(configVault.id, webPrincipalId, keyVaultSecretsUser)\n"
           "  scope: configVault\n  properties: {\n    roleDefinitionId: keyVaultSecretsUser\n")
    assert roles.count(old) == 1
    more = roles.replace(old, old.replace("keyVaultSecretsUser", "keyVaultSecretsOfficer"))
    assert template_grants(load({"modules/roles.bicep": more})) != devstack_grants()


def test_no_consumer_holds_a_vault_role_in_either():
    consumers = {i.object_id for i in seed.IDENTITIES} - set(HOLDERS) - {
        seed.SYSTEM_IDENTITY.object_id}  # the operator
    assert consumers and not [a for a in rbac.seeded() if a.principal_id in consumers]
    holders = {line[0] for line in role_assignments(TEMPLATES)}
    assert holders == {"function identity", "web app", "deployer"}


def test_the_settings_name_the_secrets_the_broker_reads_from_the_config_vault():
    from broker import config_vault

    assert set(VAULT_SECRETS.values()) == {config_vault.SIGNING_KEY,
                                          config_vault.CPV_CLIENT_SECRET,
                                          config_vault.OPERATOR_CLIENT_SECRET}
