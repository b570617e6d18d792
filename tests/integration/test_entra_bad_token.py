"""Dead refresh tokens as Entra answers them, and as MSAL Node classifies them (issue 14,
point 1). These tests move the emulated clock, so they run on a devstack of their own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import seed
from tests.integration.test_entra_fidelity import MALFORMED, token_request
from tests.support.browserless import consent_with_msal
from tests.support.devstack import environment, running_devstack

ROOT = Path(__file__).resolve().parents[2]
MSAL_NODE_SCRIPT = ROOT / "tests" / "support" / "node" / "msal_refresh.mjs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A devstack of its own: these tests move its clock."""
    with running_devstack(tmp_path_factory.mktemp("entra-fidelity")) as running, \
            environment(running.env):
        yield running


def test_expired_and_malformed_refresh_tokens_carry_suberror_bad_token(stack):
    # Entra adds `suberror: bad_token` to a dead refresh token's invalid_grant; MSAL keys on it
    # (AzureAD/microsoft-authentication-library-for-js lib/msal-common/src/error/
    # InteractionRequiredAuthError.ts: InteractionRequiredAuthSubErrorMessage has "bad_token";
    # MSAL Node's recorded AADSTS50173 answer carries it too)
    stack.reset()
    refresh_token = consent_with_msal(stack.authority, seed.CPV_APP_ID,
                                      stack.env["BROKER_CPV_CLIENT_SECRET"])["refresh_token"]
    stack.advance_days(91)
    for token, code in ((refresh_token, 700082), (MALFORMED, 9002313)):
        body = token_request(stack, grant_type="refresh_token", refresh_token=token,
                             scope=seed.PARTNER_CENTER_SCOPE).json()
        assert body["error"] == "invalid_grant"
        assert body["error_codes"] == [code]
        assert body["suberror"] == "bad_token"
    stack.reset()


def run_msal_node(stack, tokens: dict[str, str]) -> dict:
    node = shutil.which("node")
    assert node, "node is required (make test installs the npm tools)"
    payload = {"authority": f"{stack.authority}/{seed.PARTNER_TENANT_ID}",
               "clientId": seed.CPV_APP_ID, "clientSecret": stack.env["BROKER_CPV_CLIENT_SECRET"],
               "scopes": [seed.PARTNER_CENTER_SCOPE], "tokens": tokens}
    done = subprocess.run(
        [node, str(MSAL_NODE_SCRIPT)], input=json.dumps(payload), capture_output=True,
        text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": stack.ca_bundle})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_msal_node_classifies_expired_and_malformed_refresh_tokens_as_interaction_required(
        stack):
    # MSAL Node (npm @azure/msal-node) throws InteractionRequiredAuthError for invalid_grant
    # only with suberror bad_token (InteractionRequiredAuthError.isInteractionRequiredError)
    stack.reset()
    refresh_token = consent_with_msal(stack.authority, seed.CPV_APP_ID,
                                      stack.env["BROKER_CPV_CLIENT_SECRET"])["refresh_token"]
    assert run_msal_node(stack, {"live": refresh_token}) == {"live": {"ok": True}}
    stack.advance_days(91)
    results = run_msal_node(stack, {"expired": refresh_token, "malformed": MALFORMED})
    for name in ("expired", "malformed"):
        assert results[name]["ok"] is False
        assert results[name]["interactionRequired"] is True, results[name]
        assert results[name]["errorClass"] == "InteractionRequiredAuthError"
        assert results[name]["subError"] == "bad_token"
    stack.reset()
