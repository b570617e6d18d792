"""`pip install <checkout>` in a fresh venv: the consumer library alone; the servers by extra.

A consumer installs this project to call `TokenResolver`; it must not get Flask, the Functions
worker, the storage SDKs, rich, gunicorn or devstack. The base venv then resolves a real access
token from devstack with nothing but what it installed. Runs offline once the wheelhouse in the
user's cache holds the pinned wheels (tests/support/install.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devstack import seed
from tests.support.broker import consented_credential, make_broker
from tests.support.install import Venv, build_wheel, wheelhouse

pytestmark = pytest.mark.slow

SERVER_PARTS = {"flask", "flask-wtf", "werkzeug", "azure-functions", "azure-storage-blob",
                "azure-storage-queue", "rich", "gunicorn", "croniter", "itsdangerous", "aiohttp"}
CONSUMER = """
import json, os, sys, base64
from broker import TokenResolver
token = TokenResolver().access_token(sys.argv[1], scope=sys.argv[2])
claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
loaded = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"aud": claims["aud"], "appid": claims["appid"], "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    wheels = wheelhouse()
    return wheels, build_wheel(tmp_path_factory.mktemp("dist") / "dist", wheels)


@pytest.fixture(scope="module")
def consumer_venv(built, tmp_path_factory) -> Venv:
    wheels, wheel = built
    venv = Venv.create(tmp_path_factory.mktemp("consumer") / "venv")
    venv.install(wheels, str(wheel))
    return venv


@pytest.fixture(scope="module")
def server_venv(built, tmp_path_factory) -> Venv:
    wheels, wheel = built
    venv = Venv.create(tmp_path_factory.mktemp("server") / "venv")
    venv.install(wheels, f"{wheel}[server]")
    return venv


def test_wheel_holds_the_library_and_the_site_but_not_devstack(built):
    import zipfile

    _, wheel = built
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"broker", "consent_web"} <= tops
    assert not tops & {"devstack", "tests", "bench", "infra"}


def test_consumer_install_brings_the_sdks_and_msal_only(consumer_venv):
    installed = consumer_venv.distributions()
    assert {"azure-identity", "azure-keyvault-secrets", "msal", "partner-token-broker"} <= (
        installed)
    assert not installed & SERVER_PARTS


def test_consumer_install_imports_broker_but_not_devstack(consumer_venv, tmp_path):
    consumer_venv.run("python", "-c", "import broker; from broker import TokenResolver",
                      cwd=tmp_path)
    missing = consumer_venv.run("python", "-c", "import devstack", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "No module named 'devstack'" in missing.stderr


def test_consumer_install_resolves_an_access_token_from_devstack(consumer_venv, devstack,
                                                                 tmp_path):
    credential = consented_credential(make_broker(devstack, tmp_path))
    out = consumer_venv.run("python", "-c", CONSUMER, credential.secret_id,
                            seed.PARTNER_CENTER_DEFAULT_SCOPE, cwd=tmp_path,
                            env={**os.environ, **devstack.env})
    answer = json.loads(out.stdout)
    assert answer["aud"] == seed.PARTNER_CENTER_RESOURCE
    assert answer["appid"] == seed.CPV_APP_ID
    assert not set(answer["loaded"]) & {"flask", "rich", "devstack", "consent_web"}


def test_server_extra_brings_the_cli_the_site_and_the_functions_worker(server_venv, tmp_path):
    assert SERVER_PARTS - {"aiohttp"} <= server_venv.distributions()
    assert "aiohttp" not in server_venv.distributions()
    cli = server_venv.run("broker", "--help", cwd=tmp_path)
    assert "credentials" in cli.stdout
    server_venv.run("python", "-c", (
        "import pkgutil, importlib, broker, consent_web, azure.functions\n"
        "for pkg in (broker, consent_web):\n"
        "    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not mod.name.endswith('__main__'):\n"
        "            importlib.import_module(mod.name)\n"
        "from consent_web import create_app"), cwd=tmp_path)
