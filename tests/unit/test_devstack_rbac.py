"""devstack's RBAC decision and identities, without a server: roles, scopes, selectors."""

from __future__ import annotations

import pytest

from devstack import rbac, seed
from devstack.entra.directory import Directory
from devstack.managed_identity import identify

TOKEN = seed.vault_scope(seed.TOKEN_VAULT_NAME)
CONFIG = seed.vault_scope(seed.CONFIG_VAULT_NAME)


@pytest.fixture
def assignments(tmp_path) -> rbac.Rbac:
    return rbac.Rbac(tmp_path)


@pytest.mark.parametrize(("role", "action", "granted"), [
    (rbac.SECRETS_USER, rbac.GET_SECRET, True),
    (rbac.SECRETS_USER, rbac.READ_METADATA, True),
    (rbac.SECRETS_USER, rbac.SET_SECRET, False),
    (rbac.SECRETS_USER, rbac.PURGE_SECRET, False),
    (rbac.READER, rbac.READ_METADATA, True),
    (rbac.READER, rbac.GET_SECRET, False),
    (rbac.SECRETS_OFFICER, rbac.PURGE_SECRET, True),
    (rbac.SECRETS_OFFICER, rbac.SET_SECRET.upper(), True),  # action names are case-insensitive
    (rbac.ADMINISTRATOR, rbac.RECOVER_SECRET, True),
])
def test_built_in_roles_grant_their_real_data_actions(role, action, granted):
    assert role.grants(action) is granted


def test_a_secret_scope_covers_that_secret_in_any_case_and_nothing_else(assignments):
    principal = seed.CONSUMER_A_IDENTITY.object_id
    assignments.add(principal, "Key Vault Secrets User", f"{TOKEN}/secrets/RT-Contoso")
    assert assignments.allows(principal, rbac.GET_SECRET, f"{TOKEN}/secrets/rt-contoso")
    assert not assignments.allows(principal, rbac.GET_SECRET, f"{TOKEN}/secrets/rt-contoso2")
    assert not assignments.allows(principal, rbac.READ_METADATA, TOKEN)  # no listing
    assert not assignments.allows(seed.CONSUMER_B_IDENTITY.object_id, rbac.GET_SECRET,
                                  f"{TOKEN}/secrets/rt-contoso")


def test_a_role_at_the_resource_group_covers_both_vaults(assignments):
    principal = seed.CONSUMER_B_IDENTITY.object_id
    group = TOKEN.split("/providers/")[0]
    assignments.add(principal, rbac.READER.id, group)
    assert assignments.allows(principal, rbac.READ_METADATA, CONFIG)
    assert not assignments.allows(principal, rbac.GET_SECRET, f"{CONFIG}/secrets/x")


def test_the_seed_is_the_designs_least_privilege(assignments):
    def roles(identity, scope):
        return {rbac.ROLES[a.role_id].name for a in assignments.list(identity.object_id)
                if a.scope == scope}

    assert roles(seed.SYSTEM_IDENTITY, TOKEN) == roles(seed.SYSTEM_IDENTITY, CONFIG) == {
        "Key Vault Administrator"}
    for identity in (seed.ROTATION_IDENTITY, seed.SITE_IDENTITY):
        assert roles(identity, TOKEN) == {"Key Vault Secrets Officer"}
        assert roles(identity, CONFIG) == {"Key Vault Secrets User"}
    for identity in (seed.CONSUMER_A_IDENTITY, seed.CONSUMER_B_IDENTITY):
        assert assignments.list(identity.object_id) == []


def test_assignments_persist_and_reset_restores_the_seed(tmp_path):
    first = rbac.Rbac(tmp_path)
    seeded = first.list()
    _, added = first.add(seed.CONSUMER_A_IDENTITY.object_id, "Key Vault Secrets User", TOKEN)
    assert added
    assert rbac.Rbac(tmp_path).list() == first.list() != seeded
    first.reset()
    assert rbac.Rbac(tmp_path).list() == seeded


@pytest.mark.parametrize(("principal", "role", "scope", "field"), [
    ("not-a-guid", "Key Vault Secrets User", TOKEN, "principalId"),
    (seed.CONSUMER_A_IDENTITY.object_id, "Owner", TOKEN, "roleDefinitionId"),
    (seed.CONSUMER_A_IDENTITY.object_id, "Key Vault Secrets User",
     "/subscriptions/00000000-0000-0000-0000-000000000000", "scope"),
    (seed.CONSUMER_A_IDENTITY.object_id, "Key Vault Secrets User", f"{TOKEN}/keys/k", "scope"),
])
def test_a_bad_assignment_names_the_field(principal, role, scope, field):
    with pytest.raises(rbac.RbacError, match=f"'{field}'"):
        rbac.assignment(principal, role, scope)


@pytest.mark.parametrize("identity", seed.IDENTITIES)
def test_identities_are_chosen_as_app_service_does_and_are_service_principals(identity):
    assert identify("client_id", identity.client_id.upper()) == identity
    assert identify("object_id", identity.object_id) == identity
    expected = identity if identity.user_assigned else None  # mi_res_id: user-assigned only
    assert identify("mi_res_id", identity.resource_id.lower()) == expected
    directory = Directory([], [], [], [], [])
    assert directory.service_principal_id(identity.client_id, seed.CPV_TENANT_ID) == \
        identity.object_id
