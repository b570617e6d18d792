"""The layers import-linter cannot see: `function_app.py` is a module, not a package, so the
contracts in pyproject.toml (run by `make lint`) cannot name it; these hold it to the same rules."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support.imports import imported_names

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return imported_names(path, package)


def _contract(name_start: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"].startswith(name_start)]
    return contract


def test_function_app_uses_the_cores_public_surface_only():
    plumbing = _contract("adapters use the core's public surface")["forbidden_modules"]
    imported = _imports(ROOT / "function_app.py")
    assert any(name.startswith("broker.") for name in imported)  # the check sees its imports
    reached = sorted(n for n in imported for p in plumbing if n == p or n.startswith(p + "."))
    assert reached == []


def test_function_app_uses_neither_the_cli_nor_the_local_runtime():
    imported = _imports(ROOT / "function_app.py")
    assert not [n for n in imported if n.startswith(("broker.cli", "broker.runtime"))]


def test_the_core_never_imports_function_app():
    importers = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "broker").rglob("*.py"))
                 if any(n.split(".")[0] == "function_app" for n in _imports(path))]
    assert importers == []
