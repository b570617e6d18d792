"""The end-to-end stack: the real consent site process (`python -m consent_web`) against the
session devstack, and a headless Chromium driven by Playwright.

The browser is Debian's `chromium` (what `make test` installs); `CHROMIUM` overrides the path,
and Playwright's own build is used if that is what is installed. No browser is a failure with
instructions, never a skip: these tests must run in CI.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.artifacts import ARTIFACTS, ROOT

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LINK = re.compile(r"Operator sign-in \(one-time link\): (\S+)")
START_TIMEOUT = 30.0
PAGE_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@dataclass
class ConsentSite:
    """The running site: its URL, its console output, and fresh one-time sign-in links."""

    url: str
    process: subprocess.Popen
    log_path: Path
    links: queue.Queue = field(default_factory=queue.Queue)
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)

    def next_link(self, timeout: float = 10.0) -> str:
        try:
            return self.links.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"the site printed no sign-in link; its output:\n{self.output()}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_output(site: ConsentSite) -> None:
    with site.log_path.open("a") as log:
        for line in site.process.stdout:
            line = line.rstrip("\n")
            site.lines.append(line)
            log.write(line + "\n")
            log.flush()
            if match := LINK.search(line):
                site.links.put(match.group(1))


@contextlib.contextmanager
def running_site(stack_env: dict[str, str], workdir: Path, log_name: str = "consent-site",
                 **extra_env: str) -> Iterator[ConsentSite]:
    """`python -m consent_web --port <free>` on a devstack, BROKER_PUBLIC_URL pointing at it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        **os.environ, **stack_env,
        "BROKER_PUBLIC_URL": url,
        "BROKER_OPERATOR_AUTH": "local",
        "BROKER_STATE_DIR": str(workdir / "state"),
        "PYTHONUNBUFFERED": "1",
        # run from a clean directory (no stray .env) but import this checkout
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **extra_env,
    }
    env.pop("BROKER_SECRET_KEY", None)  # local dev: generated once into the state dir
    process = subprocess.Popen(
        [sys.executable, "-m", "consent_web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    site = ConsentSite(url, process, ARTIFACTS / f"{log_name}.log")
    site.log_path.write_text("")
    reader = threading.Thread(target=_read_output, args=(site,), daemon=True)
    reader.start()
    try:
        _wait_until_serving(site)
        yield site
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        process.stdout.close()


@pytest.fixture(scope="session")
def consent_site(devstack, tmp_path_factory) -> Iterator[ConsentSite]:
    """The site on the session devstack."""
    workdir = tmp_path_factory.mktemp("consent-site")  # no stray .env is read from here
    with running_site(devstack.env, workdir) as site:
        yield site


def _wait_until_serving(site: ConsentSite) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if site.process.poll() is not None:
            raise AssertionError(f"the consent site exited:\n{site.output()}")
        try:
            if requests.get(site.url + "/healthz", timeout=1).json().get("configured"):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the consent site did not start in {START_TIMEOUT:.0f} s:\n"
                         f"{site.output()}")


def chromium_executable(playwright: Playwright) -> str:
    """Debian's chromium first (CHROMIUM overrides); Playwright's own build if installed."""
    candidates = [os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    bundled = playwright.chromium.executable_path
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    pytest.fail(
        "No Chromium for the end-to-end tests. Run `make test` (it installs Debian's chromium "
        "with apt-get, or Playwright's build with `python -m playwright install chromium`), or "
        "point CHROMIUM at a Chromium binary.", pytrace=False,
    )


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # package scope: Playwright's sync API keeps an event loop running in this thread until it
    # stops, and asyncio code in later test packages could not run its own meanwhile
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(playwright), headless=True, args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()


def new_context(browser: Browser, **options) -> BrowserContext:
    # the emulated authority's certificate comes from devstack's own CA
    context = browser.new_context(viewport={"width": 1280, "height": 860},
                                  ignore_https_errors=True, **options)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    yield context
    context.close()


@pytest.fixture
def second_context(browser) -> Iterator[BrowserContext]:
    """Another browser profile: the partner admin who received the invite link."""
    context = new_context(browser)
    yield context
    context.close()


@pytest.fixture
def operator(context, consent_site) -> Page:
    """A page signed in as the operator through a console link, the way `make run` users do."""
    page = context.new_page()
    link = _fresh_link(page, consent_site)
    page.goto(link)
    assert page.url == consent_site.url + "/", page.url
    return page


def sign_in_operator(page: Page, site: ConsentSite) -> None:
    page.goto(_fresh_link(page, site))
    assert page.url == site.url + "/", page.url


def _fresh_link(page: Page, site: ConsentSite) -> str:
    """The startup link if unused; otherwise ask the site to print a new one, as a user would."""
    try:
        return site.links.get_nowait()
    except queue.Empty:
        pass
    page.goto(site.url + "/auth/login")
    page.get_by_role("button", name="Print a new link on the console").click()
    page.get_by_text("A new one-time sign-in link was printed").wait_for()
    return site.next_link()

