"""Issue 4's "Done when", from the command line alone, against a private devstack (the grant is
revoked at the end, which must not disturb other tests on the session devstack):

add a credential, open its consent link, consent, see it `active` in `broker status`, rotate,
resolve it by URL, get a Partner Center access token with `TokenResolver`, revoke it in the
emulator and see `needs-consent` plus a notification.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from broker.identity import unverified_claims
from broker.logs import redact
from broker.resolver import TokenResolver
from devstack import seed
from tests.integration.test_cli import (  # noqa: F401 - the autouse scan applies here too
    cli,
    cli_env,
    no_secret_in_any_output,
    vault_value,
)
from tests.integration.test_notify import WebhookReceiver
from tests.support.browserless import sign_in
from tests.support.devstack import environment, running_devstack

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_consent_site(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "consent_web", "--port", str(port)],
                                   env=env, cwd=env["_CWD"], stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://localhost:{port}/healthz", timeout=1).ok:
                return process
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the consent site did not start:\n{log.read_text()}")


def consent_through_the_site(invite_url: str, admin: str) -> requests.Response:
    """What the admin does in a browser: open the link, continue, sign in with MFA, accept."""
    browser = requests.Session()
    landing = browser.get(invite_url, timeout=10)
    assert landing.status_code == 200, landing.text
    assert "Continue to Microsoft sign-in" in landing.text
    started = browser.post(invite_url, data={"csrf_token": CSRF.search(landing.text)[1]},
                           allow_redirects=False, timeout=10)
    assert started.status_code == 303, started.text
    answer = sign_in(started.headers["Location"], admin)
    return answer.deliver(browser)


def test_from_the_cli_alone_a_credential_is_consented_rotated_resolved_and_flagged(tmp_path):
    cid = f"journey-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with running_devstack(tmp_path / "devstack") as stack, WebhookReceiver() as hook, \
            environment(stack.env):
        env = cli_env(stack.env, tmp_path, BROKER_PUBLIC_URL=f"http://localhost:{port}",
                      BROKER_NOTIFY_WEBHOOK_URL=hook.url)
        site = start_consent_site(env, port, tmp_path / "consent_web.log")
        try:
            # register, and hand an admin a consent link
            added = cli("credentials", "add", "--id", cid, "--environment", "production",
                        "--product", "Microsoft CSP", "--marketplace", "US",
                        "--tenant-id", seed.PARTNER_TENANT_DOMAIN, env=env)
            assert added.returncode == 0, added.stderr
            url = added.stdout.strip()
            invite = cli("invite", cid, env=env)
            assert invite.returncode == 0, invite.stderr
            invite_url = invite.stdout.strip()
            assert invite_url.startswith(f"http://localhost:{port}/invite/")

            # the admin consents through the consent site
            done = consent_through_the_site(invite_url, seed.PARTNER_ADMIN_UPN)
            assert done.status_code == 303 and done.headers["Location"].endswith("/consent/done")
            reused = requests.get(invite_url, timeout=10)
            assert "Continue to Microsoft sign-in" not in reused.text  # single use
        finally:
            site.terminate()
            site.wait(10)

        status = json.loads(cli("status", "--json", env=env).stdout)
        mine = next(c for c in status["credentials"] if c["id"] == cid)
        assert (mine["status"], mine["token_source"], mine["consented_by"], mine["mfa"]) == (
            "active", "consent", seed.PARTNER_ADMIN_UPN, True)
        table = cli("status", env=env).stdout
        assert re.search(rf"{cid}\s.*\sactive\s", table), table

        rotated = cli("rotate", cid, env=env)
        assert rotated.returncode == 0 and "1 rotated" in rotated.stdout, rotated.stdout

        # resolve by URL: metadata only, the token only when asked
        resolved = cli("resolve", url, env=env)
        assert resolved.returncode == 0, resolved.stderr
        assert "rotation" in resolved.stdout and "hidden" in resolved.stdout
        revealed = cli("resolve", url, "--reveal", env=env, reveal=True)
        latest = json.loads(cli("credentials", "show", cid, "--json", env=env).stdout)
        assert revealed.stdout.strip() == vault_value(env, latest["versions"][0]["secret_id"])

        # a consumer gets a Partner Center access token by the same URL
        resolver = TokenResolver()
        try:
            access = resolver.access_token(url, seed.PARTNER_CENTER_DEFAULT_SCOPE)
        finally:
            resolver.close()
        redact.register(access)
        claims = unverified_claims(access)
        assert (claims["aud"], claims["tid"], "mfa" in claims["amr"]) == (
            seed.PARTNER_CENTER_RESOURCE, seed.PARTNER_TENANT_ID, True)
        profile = requests.get(f"{stack.env['BROKER_PARTNER_CENTER_URL']}/v1/profiles/"
                               "organization", headers={"Authorization": f"Bearer {access}"},
                               timeout=10)
        assert profile.status_code == 200

        # the grant is revoked: validation fails, the status says so, and someone is told
        stack.revoke(seed.PARTNER_ADMIN_UPN)
        validated = cli("validate", cid, env=env)
        assert validated.returncode == 1, validated.stdout
        assert "AADSTS50173" in validated.stdout
        status = json.loads(cli("status", "--json", env=env).stdout)
        assert next(c for c in status["credentials"] if c["id"] == cid)["status"] \
            == "needs-consent"
        assert hook.received.wait(10)
        event = next(b for b in hook.bodies if b["credential_id"] == cid)
        assert event["kind"] == "needs-consent"
        assert event["invite_url"].startswith(f"http://localhost:{port}/invite/")
        assert "What to do:" in event["text"] and "AADSTS50173" in event["message"]
        assert not any(v in json.dumps(hook.bodies) for v in redact.registered())

