"""What a module can import, read from the source: the map from entry points to distributions.

    closure(["broker.cli"], ROOT)        # every first-party module it can reach, lazily or not
    third_party(modules, ROOT)           # the top-level names of what those import from outside
    distributions_for(names)             # those names as installed distributions

Imports inside functions count (the product imports SDKs lazily); those under
`if TYPE_CHECKING:` and in a module's `__getattr__` (a lazy attribute another extra provides) do
not. Used by the packaging tests to prove that each extra brings what its entry point needs.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterable
from pathlib import Path

FIRST_PARTY = ("broker", "consent_web", "devstack", "function_app")


def module_path(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path, package: str) -> set[str]:
    """Dotted names imported anywhere in `path` (relative imports resolved against `package`)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.FunctionDef) and child.name == "__getattr__":
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1])
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module or ""
                names.add(module)
                # `from broker import jobs` imports a submodule
                names.update(f"{module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return names


def closure(entries: Iterable[str], root: Path) -> dict[str, set[str]]:
    """{first-party module: names it imports}, for every module reachable from `entries`."""
    seen: dict[str, set[str]] = {}
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_path(name, root)
        if path is None:
            continue  # `from broker.x import SomeClass`: SomeClass is no module
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        seen[name] = imported_names(path, package)
        # a submodule runs its parent packages' __init__ first
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(n for n in seen[name] if n.split(".")[0] in FIRST_PARTY)
    return seen


def third_party(modules: dict[str, set[str]]) -> set[str]:
    """Top-level names imported from outside the project and the standard library.

    `azure` is a namespace shared by many distributions, so its names keep three levels
    (`azure.identity`, `azure.storage.blob`).
    """
    tops = set()
    for names in modules.values():
        for name in names:
            top = name.split(".")[0]
            if not top or top in FIRST_PARTY or top in sys.stdlib_module_names:
                continue
            tops.add(".".join(name.split(".")[:3]) if top == "azure" else top)
    return tops


def distributions_for(names: Iterable[str]) -> dict[str, set[str]]:
    """{import name: installed distributions providing it}, from the running environment."""
    providers = importlib.metadata.packages_distributions()
    owners: dict[str, set[str]] = {}  # azure package dir -> distributions with its __init__
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.parts[0] == "azure" and file.name == "__init__.py":
                owners.setdefault("/".join(file.parts[:-1]), set()).add(
                    normalize(dist.metadata["Name"]))
    found = {}
    for name in names:
        if name.startswith("azure."):
            parts = name.split(".")
            # the deepest package that a distribution owns (`azure.storage` is shared)
            prefixes = ("/".join(parts[:i]) for i in range(len(parts), 1, -1))
            found[name] = next((owners[p] for p in prefixes if p in owners), set())
        else:
            found[name] = {normalize(d) for d in providers.get(name, ())}
    return found


def normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
