"""The distribution's dependencies: a consumer gets the SDKs and MSAL; the servers get extras.

Read from the source and the dev environment, without installing anything: each extra (with
the base) must bring, directly or through its dependencies, every distribution that its entry
point can import, lazily or not; and every range in pyproject.toml must admit the exact pin in
requirements.txt that the apps are tested and deployed with. The real installs into fresh venvs
are in tests/integration/test_install.py.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.support.imports import closure, distributions_for, normalize, third_party

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = normalize(PROJECT["name"])
SERVER_ONLY = {"flask", "flask-wtf", "werkzeug", "azure-functions", "azure-storage-blob",
               "azure-storage-queue", "rich", "gunicorn", "croniter", "itsdangerous", "aiohttp",
               "limits"}

ENTRIES = {
    None: ["broker", "broker.resolver"],
    "cli": ["broker.cli", "broker.__main__"],
    "site": ["consent_web", *(f"consent_web.{p.stem}" for p in (ROOT / "consent_web").rglob(
        "*.py") if p.stem != "__init__")],
    "functions": ["function_app"],
}


def requirements(extra: str | None) -> list[Requirement]:
    """The base requirements plus those of `extra` (following `name[other]` self-references)."""
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    todo = [extra] if extra else []
    while todo:
        for text in PROJECT["optional-dependencies"][todo.pop()]:
            req = Requirement(text)
            if normalize(req.name) == NAME:
                todo.extend(req.extras)
            else:
                found.append(req)
    return found


def installed_closure(reqs: list[Requirement]) -> set[str]:
    """The distributions those requirements bring, by the dev environment's metadata."""
    seen: set[str] = set()
    todo = [(r.name, set(r.extras)) for r in reqs]
    while todo:
        name, extras = todo.pop()
        key = normalize(name)
        if key in seen and not extras:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(name) or ():
            req = Requirement(text)
            env = default_environment()
            if req.marker is None or any(
                    req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                todo.append((req.name, set(req.extras)))
    return seen


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[normalize(req.name)] = str(req.specifier).removeprefix("==")
    return found


@pytest.mark.parametrize("extra", list(ENTRIES), ids=lambda e: e or "base")
def test_each_install_brings_what_its_entry_point_imports(extra):
    modules = closure(ENTRIES[extra], ROOT)
    assert ENTRIES[extra][0] in modules
    brought = installed_closure(requirements(extra))
    missing = {name: dists for name, dists in distributions_for(third_party(modules)).items()
               if not dists & brought}
    assert not missing, f"[{extra or 'base'}] imports what it does not install: {missing}"


def test_the_consumer_install_brings_no_server_parts():
    brought = installed_closure(requirements(None))
    assert {"azure-identity", "azure-keyvault-secrets", "msal"} <= brought
    assert not brought & SERVER_ONLY


def test_the_consumer_api_reaches_no_server_module():
    reachable = closure(ENTRIES[None], ROOT)
    assert not [m for m in reachable if m.split(".")[0] in ("consent_web", "devstack")]
    assert not {"broker.cli", "broker.service", "broker.rotation"} & set(reachable)


def test_server_extra_is_every_extra():
    extras = set(PROJECT["optional-dependencies"]) - {"server"}
    assert {normalize(str(r)) for r in requirements("server")} == {
        normalize(str(r)) for e in extras for r in requirements(e)}


def test_every_range_admits_the_pinned_version():
    pinned = pins(ROOT / "requirements.txt")
    for extra in [None, *PROJECT["optional-dependencies"]]:
        for req in requirements(extra):
            version = pinned.get(normalize(req.name))
            assert version, f"{req.name} is not pinned in requirements.txt"
            assert req.specifier.contains(version), f"{req} does not admit the pin {version}"


def test_runtime_pins_hold_no_test_only_package():
    assert "aiohttp" not in pins(ROOT / "requirements.txt")
    assert "aiohttp" in pins(ROOT / "requirements-dev.txt")


def test_devstack_is_not_packaged():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["packages"]["find"]["include"] == ["broker*", "consent_web*"]
    assert "devstack" not in tool.get("package-data", {})
