"""Who may do what: every identity's rights, each line checked against devstack's Azure RBAC.

The identities are the design's (ARCHITECTURE.md, "Who may read what"): the operator (the
system-assigned identity, Key Vault Administrator on both vaults), the rotation app and the
consent site (Secrets Officer on the token vault, Secrets User on the config vault), consumer A
and consumer B (Secrets User on the secrets of the one credential each was given), and an
anonymous caller. Each line goes through the real SDK with `ManagedIdentityCredential(client_id)`
and must be allowed, or refused with Key Vault's 403 `ForbiddenByRbac` (401 for anonymous).
Then the broker's own paths: consumer A resolves by URL and gets `AccessDenied` naming the role
to grant, the rotation app rotates, the consent site registers and records a consent.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from broker import TokenResolver
from broker.credentials import Status
from broker.errors import AccessDenied
from broker.service import Broker
from broker.vault import Vault, vault_errors
from devstack import seed
from tests.support.broker import (
    RecordingNotifier,
    consented_credential,
    settings_for,
    sign_in_and_finish,
    spec,
    unique_id,
)

USER, OFFICER = "Key Vault Secrets User", "Key Vault Secrets Officer"
OPERATOR, ROTATION, SITE = seed.SYSTEM_IDENTITY, seed.ROTATION_IDENTITY, seed.SITE_IDENTITY
CONSUMER_A, CONSUMER_B = seed.CONSUMER_A_IDENTITY, seed.CONSUMER_B_IDENTITY
ANONYMOUS = None
ALLOWED, REFUSED = True, False


@dataclasses.dataclass(frozen=True)
class World:
    """Consumer A's own-app credential (rt + cs), consumer B's credential, the config secrets."""

    devstack: object
    own: str  # credential id given to consumer A
    other: str  # credential id given to consumer B

    def secret(self, target: str) -> tuple[str, str]:
        """(vault url, secret name) of a table target."""
        token, config = self.devstack.vault_url, self.devstack.config_vault_url
        return {
            "own-rt": (token, f"rt-{self.own}"), "own-cs": (token, f"cs-{self.own}"),
            "other-rt": (token, f"rt-{self.other}"),
            "signing-key": (config, seed.SIGNING_KEY_SECRET),
            "cpv-secret": (config, seed.CPV_SECRET_NAME),
            "operator-secret": (config, seed.OPERATOR_SECRET_NAME),
        }[target]


def sdk(url: str, identity: seed.Identity) -> SecretClient:
    credential = ManagedIdentityCredential(client_id=identity.client_id)
    return SecretClient(url, credential, verify_challenge_resource=False, retry_total=0)


def operator_client(url: str) -> SecretClient:
    return SecretClient(url, DefaultAzureCredential(), verify_challenge_resource=False)


def scratch(url: str, *, deleted: bool = False) -> str:
    """A throwaway secret the operator makes for a line that writes, deletes or purges."""
    name = f"scratch-{uuid.uuid4().hex[:10]}"
    with operator_client(url) as admin:
        admin.set_secret(name, "scratch")
        if deleted:
            admin.begin_delete_secret(name).wait()
    return name


# each operation: how to run it against (client, vault url, target secret name)
OPERATIONS: dict[str, Callable[[SecretClient, World, str, str], object]] = {
    "get": lambda c, w, url, name: c.get_secret(name),
    "list": lambda c, w, url, name: list(c.list_properties_of_secrets()),
    "versions": lambda c, w, url, name: list(c.list_properties_of_secret_versions(name)),
    "set": lambda c, w, url, name: c.set_secret(name, "forged-or-new"),
    "update": lambda c, w, url, name: c.update_secret_properties(name, tags={"t": "x"}),
    "delete": lambda c, w, url, name: c.begin_delete_secret(name).wait(),
    "backup": lambda c, w, url, name: c.backup_secret(name),
    "purge": lambda c, w, url, name: c.purge_deleted_secret(name),
    "recover": lambda c, w, url, name: c.begin_recover_deleted_secret(name).wait(),
}
# targets that are made fresh for the line: "scratch@token", "deleted@config", ...
FRESH = {"scratch": False, "deleted": True}

# (identity, operation, target, allowed): the whole of the design, line by line
TABLE = [
    # the operator: everything, both vaults
    (OPERATOR, "get", "signing-key", ALLOWED),
    (OPERATOR, "list", "vault@config", ALLOWED),
    (OPERATOR, "set", "scratch@config", ALLOWED),
    (OPERATOR, "get", "own-rt", ALLOWED),
    (OPERATOR, "purge", "deleted@token", ALLOWED),
    # the rotation app: tokens read and written, config read only
    (ROTATION, "list", "vault@token", ALLOWED),
    (ROTATION, "get", "own-rt", ALLOWED),
    (ROTATION, "get", "own-cs", ALLOWED),
    (ROTATION, "set", "scratch@token", ALLOWED),
    (ROTATION, "update", "scratch@token", ALLOWED),
    (ROTATION, "get", "cpv-secret", ALLOWED),
    (ROTATION, "set", "cpv-secret", REFUSED),
    (ROTATION, "set", "scratch@config", REFUSED),
    (ROTATION, "update", "scratch@config", REFUSED),
    (ROTATION, "delete", "scratch@config", REFUSED),
    (ROTATION, "purge", "deleted@config", REFUSED),
    # the consent site: registers (set), tags (update), removes (delete); config read only
    (SITE, "list", "vault@token", ALLOWED),
    (SITE, "set", "scratch@token", ALLOWED),
    (SITE, "update", "scratch@token", ALLOWED),
    (SITE, "delete", "scratch@token", ALLOWED),
    (SITE, "get", "signing-key", ALLOWED),
    (SITE, "get", "operator-secret", ALLOWED),
    (SITE, "set", "signing-key", REFUSED),
    (SITE, "delete", "scratch@config", REFUSED),
    (SITE, "purge", "deleted@config", REFUSED),
    (SITE, "recover", "deleted@config", REFUSED),
    # consumer A: reads its own credential's two secrets, nothing else, never writes
    (CONSUMER_A, "get", "own-rt", ALLOWED),
    (CONSUMER_A, "get", "own-cs", ALLOWED),
    (CONSUMER_A, "versions", "own-rt", ALLOWED),
    (CONSUMER_A, "get", "other-rt", REFUSED),
    (CONSUMER_A, "list", "vault@token", REFUSED),
    (CONSUMER_A, "set", "own-rt", REFUSED),
    (CONSUMER_A, "update", "own-rt", REFUSED),
    (CONSUMER_A, "delete", "own-rt", REFUSED),
    (CONSUMER_A, "backup", "own-rt", REFUSED),
    (CONSUMER_A, "set", "scratch@token", REFUSED),
    (CONSUMER_A, "get", "signing-key", REFUSED),
    (CONSUMER_A, "get", "cpv-secret", REFUSED),
    (CONSUMER_A, "get", "operator-secret", REFUSED),
    (CONSUMER_A, "list", "vault@config", REFUSED),
    # consumer B: its own credential only
    (CONSUMER_B, "get", "other-rt", ALLOWED),
    (CONSUMER_B, "get", "own-rt", REFUSED),
    (CONSUMER_B, "get", "own-cs", REFUSED),
    (CONSUMER_B, "get", "signing-key", REFUSED),
    # nobody in particular: no token, no answer
    (ANONYMOUS, "get", "own-rt", REFUSED),
    (ANONYMOUS, "list", "vault@token", REFUSED),
    (ANONYMOUS, "get", "signing-key", REFUSED),
]


@pytest.fixture(scope="module")
def world(devstack, tmp_path_factory) -> World:
    """Two consented credentials, each granted to one consumer as an operator would."""
    tmp = tmp_path_factory.mktemp("least-privilege")
    broker = Broker(settings_for(devstack, tmp), notifier=RecordingNotifier())
    own = consented_credential(broker, own_app=True).id
    other = consented_credential(broker).id
    grants = [(CONSUMER_A, f"rt-{own}"), (CONSUMER_A, f"cs-{own}"), (CONSUMER_B, f"rt-{other}")]
    for identity, name in grants:
        devstack.grant(identity.object_id, USER, devstack.scope(name))
    yield World(devstack, own, other)
    for identity, name in grants:
        devstack.ungrant(identity.object_id, USER, devstack.scope(name))


def resolve(world: World, target: str) -> tuple[str, str]:
    kind, _, vault = target.partition("@")
    if vault:
        url = world.devstack.vault_url if vault == "token" else world.devstack.config_vault_url
        return url, (scratch(url, deleted=FRESH[kind]) if kind in FRESH else "")
    return world.secret(target)


def attempt(identity: seed.Identity | None, operation: str, world: World, url: str,
            name: str) -> int:
    """Run one line; the HTTP status Key Vault answered (200 for success)."""
    if identity is ANONYMOUS:
        path = "secrets" if operation == "list" else f"secrets/{name}"
        response = requests.get(url + path, params={"api-version": "7.6"}, timeout=10,
                                verify=world.devstack.ca_bundle)
        return response.status_code
    with sdk(url, identity) as client:
        try:
            OPERATIONS[operation](client, world, url, name)
        except HttpResponseError as exc:
            assert exc.status_code == 403, exc.message
            assert exc.error.code == "Forbidden"
            assert exc.error.innererror["code"] == "ForbiddenByRbac"
            return 403
    return 200


@pytest.mark.parametrize(("identity", "operation", "target", "allowed"), TABLE,
                         ids=[f"{i.key.lower() if i else 'anonymous'}-{op}-{t}-"
                              f"{'allowed' if ok else 'refused'}" for i, op, t, ok in TABLE])
def test_each_identity_may_do_exactly_what_the_design_gives_it(world, identity, operation,
                                                               target, allowed):
    url, name = resolve(world, target)
    status = attempt(identity, operation, world, url, name)
    expected = 200 if allowed else (401 if identity is ANONYMOUS else 403)
    assert status == expected


def test_consumer_a_resolves_its_credential_by_url(world):
    url = f"{world.devstack.vault_url}secrets/rt-{world.own}"
    resolver = TokenResolver(ManagedIdentityCredential(client_id=CONSUMER_A.client_id))
    assert resolver.refresh_token(url)
    token = resolver.access_token(url, seed.PARTNER_CENTER_DEFAULT_SCOPE)
    assert token.count(".") == 2  # a JWT, made with the partner app secret it may read


@pytest.mark.parametrize("target", ["other-rt", "signing-key", "cpv-secret", "operator-secret"])
def test_consumer_a_is_refused_with_the_role_to_ask_for(world, target):
    url, name = world.secret(target)
    if name.startswith("rt-"):  # through the consumer API
        resolver = TokenResolver(ManagedIdentityCredential(client_id=CONSUMER_A.client_id))
        with pytest.raises(AccessDenied) as refused:
            resolver.refresh_token(f"{url}secrets/{name}")
    else:  # the broker's own secrets are not credentials: the same mapping, straight from the SDK
        with sdk(url, CONSUMER_A) as client, pytest.raises(AccessDenied) as refused, \
                vault_errors():
            client.get_secret(name)
    assert refused.value.role == USER
    assert refused.value.scope.endswith(f"/secrets/{name}")
    assert USER in refused.value.hint
    assert refused.value.action == "Microsoft.KeyVault/vaults/secrets/getSecret/action"


def test_consumer_a_is_refused_any_write_with_the_officer_role_named(world):
    vault = Vault(settings_for(world.devstack, world.devstack.state_dir / "consumer-a"),
                  credential=ManagedIdentityCredential(client_id=CONSUMER_A.client_id))
    with pytest.raises(AccessDenied) as refused:
        vault.delete_credential(world.own)
    assert refused.value.role == OFFICER
    assert refused.value.action == "Microsoft.KeyVault/vaults/secrets/delete"
    with sdk(world.devstack.vault_url, CONSUMER_A) as client, \
            pytest.raises(AccessDenied) as write, vault_errors(world.own):
        client.set_secret(f"rt-{world.own}", "forged")
    assert (write.value.role, write.value.action) == (
        OFFICER, "Microsoft.KeyVault/vaults/secrets/setSecret/action")


def broker_as(identity: seed.Identity, devstack, tmp_path) -> Broker:
    settings = settings_for(devstack, tmp_path)
    credential = ManagedIdentityCredential(client_id=identity.client_id)
    return Broker(settings, vault=Vault(settings, credential=credential),
                  notifier=RecordingNotifier())


def test_the_consent_site_registers_and_records_consent_with_its_own_identity(devstack,
                                                                              tmp_path):
    site = broker_as(SITE, devstack, tmp_path)
    added = site.add_credential(spec(unique_id("site")))
    result = sign_in_and_finish(site, added.id)
    assert result.credential_id == added.id
    assert site.get_credential(added.id).stored_status is Status.ACTIVE


def test_the_rotation_app_rotates_with_its_own_identity(devstack, tmp_path, world):
    rotation = broker_as(ROTATION, devstack, tmp_path)
    before = rotation.get_credential(world.other).latest.version
    result = rotation.rotate(world.other)
    assert result.outcome == "rotated", result
    assert rotation.get_credential(world.other).latest.version != before
    # consumer B, granted the secret (not a version), reads the rotated token
    resolver = TokenResolver(ManagedIdentityCredential(client_id=CONSUMER_B.client_id))
    assert resolver.refresh_token(f"{devstack.vault_url}secrets/rt-{world.other}")


def test_the_consent_site_cannot_purge_a_vault_deployed_with_purge_protection(devstack):
    """Secrets Officer includes purge (the site offers it for removed credentials); where the
    vault has purge protection, as infra/ deploys it, Key Vault refuses every purge, the
    site's included, while the site can still recover."""
    purged, recovered = (scratch(devstack.vault_url, deleted=True) for _ in range(2))
    devstack.vault_settings("main", purge_protection=True)
    try:
        with sdk(devstack.vault_url, SITE) as client:
            with pytest.raises(HttpResponseError) as refused:
                client.purge_deleted_secret(purged)
            assert refused.value.status_code == 403
            assert "purge protection" in refused.value.message
            client.begin_recover_deleted_secret(recovered).wait()
    finally:
        devstack.vault_settings("main", purge_protection=False)
