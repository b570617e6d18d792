"""`python -m consent_web` as `make run` starts it: what it prints and what it serves."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serve(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[tuple[str, list[str]]]:
    """Start the site on a free port; yield its URL and the lines it printed so far."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    clean.update(env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "consent_web", "--port", "0", *args], cwd=tmp_path, env=clean,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if any(marker in line for marker in ("one-time link", "Almost there",
                                                 "sign in with")):
                break
        url = re.search(r"Consent site: (\S+)/", "\n".join(lines)).group(1)
        yield url, lines
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def test_without_settings_it_starts_and_explains_what_to_set(tmp_path):
    with serve(tmp_path, {}) as (url, lines):
        assert any(line.startswith("Almost there: BROKER_VAULT_URL") for line in lines)
        page = requests.get(url + "/", timeout=5)
        assert page.status_code == 503 and "Almost there: set these settings" in page.text
        assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok",
                                                                   "configured": False}


def test_local_mode_prints_a_one_time_sign_in_link(tmp_path):
    env = {"BROKER_VAULT_URL": "https://unused.vault.azure.net",
           "BROKER_STATE_DIR": str(tmp_path / "state")}
    with serve(tmp_path, env) as (url, lines):
        link = re.search(r"Operator sign-in \(one-time link\): (\S+)", "\n".join(lines)).group(1)
        assert link.startswith("http://localhost:47400/auth/local?token=")
        path = link.removeprefix("http://localhost:47400")
        http = requests.Session()
        first = http.get(url + path, allow_redirects=False, timeout=5)
        assert first.status_code == 302 and first.headers["Location"] == "/"
        assert "HttpOnly" in first.headers["Set-Cookie"]
        again = requests.get(url + path, allow_redirects=False, timeout=5)
        assert again.status_code == 403


def test_a_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "consent_web", "--port", str(port)], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert f"Port {port} is in use by another program" in result.stderr
    assert "Traceback" not in result.stderr
