"""Invite links are signed, expire and name one credential (single use is an integration test:
it lives in the vault)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from broker.errors import ConsentFailed
from broker.invites import SALT, Invites
from broker.settings import Settings

KEY = "k" * 40
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def invites(key: str = KEY) -> Invites:
    return Invites(Settings(vault_url="https://v.example", secret_key=key), vault=None)


def token(key=KEY, salt=SALT, **data) -> str:
    payload = {"c": "contoso", "i": "abc", "e": int((NOW + timedelta(hours=1)).timestamp())}
    payload.update(data)
    return URLSafeSerializer(key, salt=salt).dumps(payload)


def test_a_genuine_link_names_its_credential_and_invite():
    claim = invites().verify(token(), now=NOW)
    assert (claim.credential_id, claim.invite_id) == ("contoso", "abc")
    assert claim.expires_at == NOW + timedelta(hours=1)


@pytest.mark.parametrize("forged", [
    token(key="x" * 40),               # signed with another key
    token(salt="another.purpose"),     # a signature made for something else
    token()[:-2] + "AA",               # altered signature
    token().replace(".", "x.", 1),     # altered payload
    "",
    "not-a-token",
])
def test_forged_links_are_refused(forged):
    with pytest.raises(ConsentFailed) as caught:
        invites().verify(forged, now=NOW)
    assert caught.value.reason == "invite-invalid"


def test_expired_links_are_refused():
    with pytest.raises(ConsentFailed, match="expired") as caught:
        invites().verify(token(), now=NOW + timedelta(hours=1, seconds=1))
    assert caught.value.reason == "invite-invalid"


def test_a_signed_payload_of_the_wrong_shape_is_refused():
    with pytest.raises(ConsentFailed, match="malformed"):
        invites().verify(URLSafeSerializer(KEY, salt=SALT).dumps(["contoso"]), now=NOW)


def test_refusals_never_echo_the_link():
    link = token(key="x" * 40)
    with pytest.raises(ConsentFailed) as caught:
        invites().verify(link, now=NOW)
    assert link not in str(caught.value)
