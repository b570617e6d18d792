"""The azd hooks (infra/hooks/*.sh), run by a real `sh` as azd runs them, against stand-ins for
the two programs they call. Azure cannot exist here, so `az` is a small program that answers
from a fixture shaped like the Azure CLI's own output and evaluates each `--query` with
jmespath (what the Azure CLI uses), and `azd` keeps `azd env set` values in a file. Each refusal
prints a command; the tests run that command and show the next run passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parents[2] / "infra" / "hooks"
ENV_NAME = "broker-test"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
LOCATION = "swedencentral"
TOKEN_VAULT = "kv-abcdefgh12345"
CONFIG_VAULT = "kv-cfg-abcdefgh12345"

FAKE_AZ = r'''
import json, os, sys
import jmespath

args = sys.argv[1:]
state = json.loads(open(os.environ["FAKE_AZURE"]).read())
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")


def option(name, default=None):
    return args[args.index(name) + 1] if name in args else default


def out(value):
    query = option("--query")
    if query:
        value = jmespath.search(query, value)
    if option("--output", option("-o")) == "tsv":
        for item in value if isinstance(value, list) else [value]:
            print(item)
    elif option("--output", option("-o")) != "none":
        print(json.dumps(value))


if not state.get("signed_in", True):
    sys.exit("ERROR: Please run 'az login' to setup account.")
if args[:2] == ["account", "show"]:
    out({"id": os.environ.get("AZURE_SUBSCRIPTION_ID")})
elif args[:2] == ["provider", "show"]:
    out({"namespace": option("--namespace"),
         "registrationState": state["providers"].get(option("--namespace"), "NotRegistered")})
elif args[:2] == ["keyvault", "list-deleted"]:
    out(state["deleted_vaults"])
elif args[:3] == ["functionapp", "function", "show"]:
    if option("--function-name") not in state["functions"].get(option("--name"), []):
        sys.exit("ERROR: Function not found")
    out({"name": option("--function-name")})
else:
    sys.exit(f"fake az: unexpected command {args}")
'''

FAKE_AZD = r'''
import json, os, sys
args = sys.argv[1:]
if args[:2] != ["env", "set"] or len(args) != 4:
    sys.exit(f"fake azd: unexpected command {args}")
path = os.environ["FAKE_AZD_ENV"]
values = json.loads(open(path).read()) if os.path.exists(path) else {}
values[args[2]] = args[3]
open(path, "w").write(json.dumps(values))
'''


def deleted_vault(name: str, env: str = ENV_NAME, location: str = LOCATION) -> dict:
    """One entry of `az keyvault list-deleted --resource-type vault` as the CLI prints it."""
    return {
        "id": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/locations/{location}"
              f"/deletedVaults/{name}",
        "name": name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "deletionDate": "2026-12-01T10:00:00+00:00",
            "location": location,
            "purgeProtectionEnabled": True,
            "scheduledPurgeDate": "2027-03-01T10:00:00+00:00",
            "tags": {"azd-env-name": env, "broker-environment": "test"},
            "vaultId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-{env}/providers/"
                       f"Microsoft.KeyVault/vaults/{name}",
        },
    }


@dataclass
class Run:
    code: int
    stderr: str
    az_calls: list[list[str]]
    env_set: dict[str, str] = field(default_factory=dict)

    def commands(self) -> list[str]:
        """The indented command lines of a refusal."""
        return [line.strip() for line in self.stderr.splitlines() if line.startswith("    ")]


class Azure:
    """The stand-in subscription, the azd environment and a way to run a hook against them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for name, code in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
            script = self.bin / name
            script.write_text(f"#!{sys.executable}\n{code}")
            script.chmod(0o755)
        self.state = {"signed_in": True, "providers": {}, "deleted_vaults": [], "functions": {}}
        self.values = {"AZURE_ENV_NAME": ENV_NAME, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
                       "AZURE_LOCATION": LOCATION}

    def run(self, hook: str, *, with_az: bool = True) -> Run:
        (self.tmp / "azure.json").write_text(json.dumps(self.state))
        log, store = self.tmp / "az.log", self.tmp / "azd-env.json"
        log.write_text("")
        store.unlink(missing_ok=True)
        path = f"{self.bin}:/usr/bin:/bin" if with_az else self._path_without_az()
        env = {"PATH": path, "HOME": str(self.tmp), "FAKE_AZURE": str(self.tmp / "azure.json"),
               "FAKE_AZ_LOG": str(log), "FAKE_AZD_ENV": str(store), **self.values}
        done = subprocess.run(["sh", str(HOOKS / f"{hook}.sh")], env=env, capture_output=True,
                              text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        env_set = json.loads(store.read_text()) if store.exists() else {}
        self.values.update(env_set)  # what azd would load next time
        return Run(done.returncode, done.stderr, calls, env_set)

    def follow(self, command: str) -> None:
        """Run a command a refusal printed (an `azd env set ...`), as the operator would."""
        assert command.startswith("azd env set "), command
        store = self.tmp / "azd-env.json"
        store.unlink(missing_ok=True)
        subprocess.run(["sh", "-c", command], env={"PATH": f"{self.bin}:/usr/bin:/bin",
                                                   "FAKE_AZD_ENV": str(store)}, check=True)
        self.values.update(json.loads(store.read_text()))

    def _path_without_az(self) -> str:
        only_azd = self.tmp / "only-azd"
        only_azd.mkdir(exist_ok=True)
        shutil.copy(self.bin / "azd", only_azd / "azd")
        return f"{only_azd}:/usr/bin:/bin"


@pytest.fixture
def azure(tmp_path) -> Azure:
    if shutil.which("az", path="/usr/bin:/bin"):
        pytest.skip("a real Azure CLI is installed; these tests need the stand-in")
    return Azure(tmp_path)


def test_a_first_deployment_passes_every_check(azure):
    run = azure.run("preprovision")
    assert run.code == 0, run.stderr
    assert run.stderr == "" and run.env_set == {}
    assert run.az_calls[1][:2] == ["keyvault", "list-deleted"]


def test_after_azd_down_the_soft_deleted_vaults_stop_the_run_with_the_command_that_recovers_them(
        azure):
    azure.state["deleted_vaults"] = [
        deleted_vault(TOKEN_VAULT), deleted_vault(CONFIG_VAULT),
        deleted_vault("kv-other0000000", env="someone-else"),  # another environment's
        deleted_vault("kv-elsewhere0000", location="westeurope"),  # same name, another region
    ]
    refused = azure.run("preprovision")
    assert refused.code == 1
    assert "soft-deleted" in refused.stderr and "every secret comes back" in refused.stderr
    command = f'azd env set RECOVER_KEY_VAULTS "{TOKEN_VAULT},{CONFIG_VAULT}"'
    assert refused.commands()[0] == command
    azure.follow(command)
    assert azure.run("preprovision").code == 0  # the deployment recovers them
    cleared = azure.run("postprovision")
    assert cleared.code == 0 and cleared.env_set == {"RECOVER_KEY_VAULTS": ""}
    assert "recovered" in cleared.stderr


def test_a_recover_list_with_nothing_to_recover_stops_the_run(azure):
    azure.values["RECOVER_KEY_VAULTS"] = TOKEN_VAULT
    refused = azure.run("preprovision")
    assert refused.code == 1
    assert refused.commands() == ['azd env set RECOVER_KEY_VAULTS ""']
    azure.follow(refused.commands()[0])
    assert azure.run("preprovision").code == 0


def test_the_private_endpoint_needs_the_microsoft_app_provider_registered(azure):
    azure.values["USE_PRIVATE_ENDPOINT"] = "true"
    refused = azure.run("preprovision")
    assert refused.code == 1
    assert "Microsoft.App" in refused.stderr and "NotRegistered" in refused.stderr
    assert refused.commands() == [
        f"az provider register --namespace Microsoft.App --subscription {SUBSCRIPTION} --wait"]
    azure.state["providers"]["Microsoft.App"] = "Registered"  # what that command does
    assert azure.run("preprovision").code == 0
    azure.values["USE_PRIVATE_ENDPOINT"] = "false"
    azure.state["providers"] = {}
    assert azure.run("preprovision").code == 0  # not asked without the private endpoint


def test_event_subscriptions_left_on_stop_a_run_until_the_function_is_deployed(azure):
    azure.values.update(DEPLOY_EVENT_SUBSCRIPTION="true", AZURE_FUNCTION_APP_NAME="func-x",
                        AZURE_RESOURCE_GROUP=f"rg-{ENV_NAME}")
    refused = azure.run("preprovision")
    assert refused.code == 1
    assert refused.commands()[0] == "azd env set DEPLOY_EVENT_SUBSCRIPTION false"
    azure.state["functions"]["func-x"] = ["rotate_due", "secret_near_expiry"]
    assert azure.run("preprovision").code == 0  # deployed: the subscriptions can be created
    azure.state["functions"] = {}
    azure.follow(refused.commands()[0])
    assert azure.run("preprovision").code == 0


def test_azd_down_switches_the_event_subscriptions_off_for_the_next_up(azure):
    azure.values["DEPLOY_EVENT_SUBSCRIPTION"] = "true"
    run = azure.run("postdown")
    assert run.code == 0 and run.env_set == {"DEPLOY_EVENT_SUBSCRIPTION": "false"}
    assert "soft-deleted" in run.stderr
    assert azure.run("postdown").env_set == {}  # already off: nothing to change


def test_after_the_first_deploy_the_next_step_is_printed_until_the_alarm_is_on(azure):
    first = azure.run("postdeploy")
    assert first.code == 0
    assert "azd env set DEPLOY_EVENT_SUBSCRIPTION true && azd provision" in first.stderr
    azure.values["DEPLOY_EVENT_SUBSCRIPTION"] = "true"
    assert azure.run("postdeploy").stderr == ""


def test_without_the_azure_cli_the_checks_are_skipped_with_a_warning(azure):
    run = azure.run("preprovision", with_az=False)
    assert run.code == 0
    assert "not installed" in run.stderr and run.az_calls == []


def test_an_azure_cli_that_is_not_signed_in_stops_the_run_with_az_login(azure):
    azure.state["signed_in"] = False
    refused = azure.run("preprovision")
    assert refused.code == 1
    assert refused.commands() == [f"az login && az account set --subscription {SUBSCRIPTION}"]


@pytest.mark.parametrize("hook", sorted(p.stem for p in HOOKS.glob("*.sh")))
def test_each_hook_is_posix_sh(hook):
    assert subprocess.run(["sh", "-n", str(HOOKS / f"{hook}.sh")]).returncode == 0
    text = (HOOKS / f"{hook}.sh").read_text()
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    assert os.access(HOOKS / f"{hook}.sh", os.X_OK)
