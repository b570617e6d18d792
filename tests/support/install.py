"""Install this checkout into fresh venvs, as a consumer's `pip install <checkout>` would.

    wheels = wheelhouse()                       # the pinned runtime wheels, downloaded once
    wheel = build_wheel(tmp / "dist", wheels)   # this checkout (a copy: the tree stays clean)
    venv = Venv.create(tmp / "venv")
    venv.install(wheels, f"{wheel}[server]")

The wheelhouse lives in the user's cache (like pip's) and is filled from the package index
only when something is missing, so a second run, or one without network, installs offline
with `--no-index`. Venvs are made without pip and driven by the test environment's pip
(`pip --python`), which saves a bootstrap per venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
BUILD_REQUIREMENTS = ["setuptools>=68"]  # pyproject.toml [build-system] requires


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    if result.returncode:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def wheelhouse() -> Path:
    """A folder of wheels for requirements.txt and the build backend, for this platform."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "partner-token-broker" / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = ["-r", str(ROOT / "requirements.txt"), *BUILD_REQUIREMENTS]
    offline = subprocess.run([*PIP, "download", "--no-index", "--find-links", str(folder),
                              "--dest", str(folder), *wanted], capture_output=True, timeout=300)
    if offline.returncode:  # something new was pinned: fetch it once
        _run([*PIP, "download", "--dest", str(folder), *wanted])
    return folder


def checkout_files() -> list[str]:
    """What `pip install <checkout>` sees: tracked files and new ones git does not ignore."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=ROOT).stdout
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def build_wheel(dist: Path, wheels: Path) -> Path:
    """This checkout as a wheel, built from a copy (setuptools writes build/ into the tree)."""
    source = dist.parent / "source"
    for name in checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    _run([*PIP, "wheel", "--no-deps", "--no-index", "--find-links", str(wheels),
          "--wheel-dir", str(dist), str(source)])
    (wheel,) = dist.glob("partner_token_broker-*.whl")
    return wheel


@dataclass
class Venv:
    path: Path

    @classmethod
    def create(cls, path: Path) -> Venv:
        _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
        return cls(path)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def install(self, wheels: Path, *requirements: str) -> None:
        _run([*PIP, "--python", self.python, "install", "--no-index", "--find-links",
              str(wheels), *requirements])

    def distributions(self) -> set[str]:
        listed = _run([*PIP[:-1], "--python", self.python, "list", "--format", "json"]).stdout
        return {item["name"].lower().replace("_", "-") for item in json.loads(listed)}

    def run(self, *argv: str, cwd: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run in the venv from `cwd`, away from the checkout (so only installed code loads)."""
        env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        argv = (self.python, *argv[1:]) if argv[0] == "python" else argv
        if check:
            return _run(list(argv), cwd=cwd, env=env)
        return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
