"""The consumer examples in JavaScript and for the Azure CLI, run as their users would run them.

Each example resolves a credential's refresh token by its secret identifier URL, makes a
Partner Center access token from it and calls Partner Center with it: the stub answering with the
partner's profile is what proves the token works. They run against a devstack of their own that
also knows a consumer app registration (the Azure CLI signs in as that service principal), for a
CPV-model credential and one with the partner's own app, with least privilege: each consumer
identity holds Key Vault Secrets User on `rt-<id>` (and `cs-<id>`) of those credentials only.
`make test` installs what they need: the Node packages (package.json) and the Azure CLI
(.venv-azcli).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jwt
import pytest

from devstack import seed
from tests.support.broker import consented_credential, make_broker, private_devstack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AZ_BIN = ROOT / ".venv-azcli" / "bin"
NODE_PACKAGES = ("@azure/identity", "@azure/keyvault-secrets", "@azure/msal-node")
CONSUMER_APP_ID = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
CONSUMER_APP_SECRET = "cj18Q~devstackConsumerJobSecret.valid2099"
SECRETS_USER = "Key Vault Secrets User"
NODE_IDENTITY = seed.CONSUMER_A_IDENTITY  # the JavaScript consumer's managed identity


def needs(ready: bool, what: str) -> None:
    """`make test` installs what the examples need; elsewhere they are skipped, never in CI."""
    if not ready:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing: `make test` installs it")
        pytest.skip(f"{what} is not installed (`make test` installs it)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("examples-devstack")
    (directory / "directory.json").write_text(json.dumps({"apps": [{
        "app_id": CONSUMER_APP_ID, "name": "Contoso billing job", "tenant": seed.CPV_TENANT_DOMAIN,
        "secrets": [{"value": CONSUMER_APP_SECRET}], "permissions": {},
    }]}))
    with private_devstack(directory) as running:
        yield running


@pytest.fixture(scope="module")
def credentials(stack, tmp_path_factory) -> dict:
    """Two credentials; the JavaScript consumer's identity may read their secrets, as an
    operator grants it (the Azure CLI's service principal is granted in `az_granted`)."""
    broker = make_broker(stack, tmp_path_factory.mktemp("examples-broker"))
    made = {"cpv": consented_credential(broker),
            "own-app": consented_credential(broker, own_app=True)}
    for kind, credential in made.items():
        names = [f"rt-{credential.id}"] + ([f"cs-{credential.id}"] if kind == "own-app" else [])
        for name in names:
            stack.grant(NODE_IDENTITY.object_id, SECRETS_USER, stack.scope(name))
    return made


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_partner_center_accepted(answer: dict) -> None:
    assert answer["companyName"] == seed.PARTNER_TENANT_NAME
    assert answer["tenantId"] == seed.PARTNER_TENANT_ID


# -- JavaScript ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node(stack) -> str:
    node = shutil.which("node")
    needs(node is not None, "Node.js")
    needs(all((ROOT / "node_modules" / p).is_dir() for p in NODE_PACKAGES), " ".join(NODE_PACKAGES))
    return node


@pytest.mark.parametrize("kind", ["cpv", "own-app"])
def test_javascript_consumer_gets_a_token_partner_center_accepts(node, stack, credentials, kind,
                                                                 tmp_path):
    url = credentials[kind].secret_id
    result = run([node, str(EXAMPLES / "javascript" / "consumer.mjs"), url],
                 {**os.environ, **stack.env, "AZURE_CLIENT_ID": NODE_IDENTITY.client_id},
                 tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["url"] == url and answer["tenant"] == seed.PARTNER_TENANT_ID
    assert answer["partnerCenter"]["status"] == 200
    assert_partner_center_accepted(answer["partnerCenter"])


def test_javascript_consumer_names_a_missing_secret(node, stack, tmp_path):
    url = stack.vault_url.rstrip("/") + "/secrets/rt-nobody-here"
    result = run([node, str(EXAMPLES / "javascript" / "consumer.mjs"), url],
                 {**os.environ, **stack.env}, tmp_path)  # the operator's identity: may look
    assert result.returncode == 1 and result.stdout == ""
    assert "rt-nobody-here was not found" in result.stderr


def test_javascript_consumer_without_a_role_is_refused(node, stack, credentials, tmp_path):
    result = run([node, str(EXAMPLES / "javascript" / "consumer.mjs"),
                  credentials["cpv"].secret_id],
                 {**os.environ, **stack.env,
                  "AZURE_CLIENT_ID": seed.CONSUMER_B_IDENTITY.client_id}, tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "ForbiddenByRbac" in result.stderr or "not authorized" in result.stderr


# -- Azure CLI -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def az_env(stack, tmp_path_factory) -> dict[str, str]:
    """The Azure CLI signed in to devstack as the consumer app, in a config dir of its own."""
    needs((AZ_BIN / "az").is_file(), "The Azure CLI (.venv-azcli)")
    env = {**os.environ, **stack.env,
           "PATH": f"{AZ_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "AZURE_CONFIG_DIR": str(tmp_path_factory.mktemp("azure-config")),
           "AZURE_CORE_COLLECT_TELEMETRY": "false"}
    login = run([str(EXAMPLES / "azure-cli" / "devstack-login.sh")],
                {**env, "AZURE_CLIENT_ID": CONSUMER_APP_ID, "AZURE_CLIENT_SECRET":
                 CONSUMER_APP_SECRET, "AZURE_TENANT_ID": seed.CPV_TENANT_DOMAIN}, ROOT)
    assert login.returncode == 0, login.stderr
    assert CONSUMER_APP_SECRET not in login.stdout + login.stderr
    return env


@pytest.fixture(scope="module")
def az_granted(az_env, stack, credentials) -> dict[str, str]:
    """The operator grants the consumer's service principal Secrets User on each credential's
    secrets, as infra/README.md tells one to; without it the vault answers 403."""
    token = run([str(AZ_BIN / "az"), "account", "get-access-token", "--resource",
                 seed.VAULT_RESOURCE, "--query", "accessToken", "--output", "tsv"], az_env, ROOT)
    assert token.returncode == 0, token.stderr
    object_id = jwt.decode(token.stdout.strip(), options={"verify_signature": False})["oid"]
    for credential in credentials.values():
        names = [f"rt-{credential.id}"] + ([f"cs-{credential.id}"] if credential.client_id else [])
        for name in names:
            stack.grant(object_id, "Key Vault Secrets User", stack.scope(name))
    return az_env


@pytest.mark.parametrize("kind", ["cpv", "own-app"])
def test_azure_cli_consumer_gets_a_token_partner_center_accepts(az_granted, credentials, kind,
                                                                tmp_path):
    result = run([str(EXAMPLES / "azure-cli" / "consumer.sh"), credentials[kind].secret_id],
                 az_granted, tmp_path)
    assert result.returncode == 0, result.stderr
    assert_partner_center_accepted(json.loads(result.stdout))
