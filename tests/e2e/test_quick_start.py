"""The README's quick start, done as it is printed: `make run` (which runs `broker dev`), the
operator sign-in link from its banner, then the clicks and values the README names, in
Chromium, until the first credential is Active. The values typed are read from the README, so
the two cannot drift apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.artifacts import ROOT
from tests.e2e.authority import sign_in
from tests.e2e.conftest import _free_port, new_context

README = ROOT / "README.md"
FIELDS = ("Credential ID", "Product", "Marketplace", "Partner tenant ID")


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Quick start"):text.index("## For CSP operators")]


def read_until(process: subprocess.Popen, marker: str, timeout: float = 60) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"no {marker!r} in the output of `broker dev`:\n{''.join(seen)}")


@pytest.fixture
def make_run(tmp_path):
    """What `make run PORT=<free>` runs, from a directory of its own, with a clean environment."""
    assert "$(PY) -m broker dev --port $(PORT)" in (ROOT / "Makefile").read_text()
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BROKER_", "DEVSTACK_", "AzureWebJobsStorage", "IDENTITY_"))}
    env.update(BROKER_STATE_DIR=str(tmp_path / "broker"), PYTHONPATH=str(ROOT), NO_COLOR="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "dev", "--port", str(port), "--state-dir",
         str(tmp_path / "devstack"), "--devstack-port-base", "0"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        yield read_until(process, "Ctrl-C stops everything"), port
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_readme_quick_start_works_to_the_first_active_credential(browser, make_run):
    text = quick_start()
    values = {}
    for label in FIELDS:
        found = re.search(rf"{label} `([^`]+)`", text)
        assert found, f"the quick start no longer says what to type as {label}"
        values[label] = found.group(1)
    user = re.search(r"Sign in as `([^`]+)` / `([^`]+)`", text)
    assert user and "Consent on behalf of your organization" in text

    banner, port = make_run
    link = re.search(r"Operator sign-in\s+(\S+)", banner).group(1)
    site = f"http://localhost:{port}"
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(link)
        page.get_by_role("link", name="Add credentials").first.click()
        for label, value in values.items():
            page.get_by_label(re.compile(rf"^{re.escape(label)}\W*$")).fill(value)
        with page.expect_navigation():
            page.get_by_role("button", name="Save and sign in with Microsoft").click()
        assert user.group(1) == "admin@contoso.example" and user.group(2) == "devstack"
        sign_in(page, site, user.group(1))
        expect(page.locator("h1")).to_have_text("Consent granted")
        url = page.locator(".secret-id code").inner_text()
        assert url.endswith(f"/secrets/rt-{values['Credential ID']}")  # on screen, unversioned
        page.get_by_role("link", name=f"Open {values['Credential ID']}").click()
        expect(page.locator("h1 .badge")).to_have_text("Active")
    finally:
        context.close()


def test_the_quick_start_s_cli_line_is_the_banner_s():
    """The README shows the banner's CLI lines; what `make run` prints must look the same."""
    text = quick_start()
    assert "Use the CLI from another shell, in any directory:" in text
    assert re.search(r"/\.venv/bin/broker status", text)
    assert Path(ROOT / "broker" / "cli" / "dev.py").read_text().count(
        "Use the CLI from another shell, in any directory:") == 1
