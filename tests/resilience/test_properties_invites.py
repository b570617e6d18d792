"""Invite links: whatever text arrives as a token, only a genuine, current link for its own
credential opens anything; everything else is `invite-invalid` and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from broker.errors import ConsentFailed
from broker.invites import SALT
from tests.support.broker import REDIRECT_URI, SECRET_KEY, make_broker, spec

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@pytest.fixture
def broker(devstack, tmp_path):
    return make_broker(devstack, tmp_path)


def token_of(invite) -> str:
    return invite.url.rsplit("/", 1)[1]


def state(broker, credential_id: str) -> tuple:
    """What an invite check could change: the versions and the latest version's tags."""
    versions = broker.versions(credential_id)
    return [v.version for v in versions], versions[0].tags


def mutations(token: str) -> st.SearchStrategy[str]:
    """The genuine token with a character replaced, inserted or removed, or cut short."""
    index = st.integers(0, len(token) - 1)
    char = st.sampled_from(TOKEN_ALPHABET) | st.characters()
    return st.one_of(
        st.tuples(index, char).map(lambda p: token[:p[0]] + p[1] + token[p[0] + 1:]),
        st.tuples(index, char).map(lambda p: token[:p[0]] + p[1] + token[p[0]:]),
        index.map(lambda i: token[:i] + token[i + 1:]),
        index.map(lambda i: token[:i]),
    )


def test_any_token_text_is_refused_unless_it_carries_a_genuine_signature(broker):
    credential = broker.add_credential(spec())
    genuine = token_of(broker.create_invite(credential.id))
    payload = URLSafeSerializer(SECRET_KEY, salt=SALT).loads(genuine)
    before = state(broker, credential.id)
    opened = []

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(
        st.text(max_size=200),
        st.text(TOKEN_ALPHABET, min_size=20, max_size=160),
        mutations(genuine),
        st.just(genuine),
    ))
    def open_link(text):
        try:
            found = broker.open_invite(text)
        except ConsentFailed as exc:
            assert exc.reason == "invite-invalid"
            if len(text) >= 20:  # a link's token is never repeated back in the message
                assert text not in str(exc)
            return
        # only the genuine signature over the genuine payload gets here (a few base64
        # spellings of the same bytes exist, so the text itself may differ)
        assert URLSafeSerializer(SECRET_KEY, salt=SALT).loads(text) == payload
        assert found.id == credential.id
        opened.append(text)

    open_link()
    assert genuine in opened
    assert state(broker, credential.id) == before  # refusing a link stores nothing


def test_a_genuine_link_opens_only_before_it_expires(broker):
    credential = broker.add_credential(spec())

    @settings(max_examples=25, deadline=None)
    @given(ttl_hours=st.floats(0.01, 72), offset_s=st.floats(-72 * 3600, 72 * 3600))
    def open_at(ttl_hours, offset_s):
        assume(abs(offset_s) > 1.0)  # the link carries its expiry in whole seconds
        invite = broker.create_invite(credential.id, ttl_hours)
        when = invite.expires_at + timedelta(seconds=offset_s)
        if offset_s < 0:
            assert broker.invites.open(token_of(invite), now=when).id == credential.id
        else:
            with pytest.raises(ConsentFailed) as refused:
                broker.invites.open(token_of(invite), now=when)
            assert refused.value.reason == "invite-invalid"

    open_at()


def test_a_genuine_link_for_another_credential_or_expired_is_refused(broker):
    mine, other = broker.add_credential(spec()), broker.add_credential(spec())
    token = token_of(broker.create_invite(mine.id))
    before = state(broker, other.id)

    for refused in (
        lambda: broker.invites.open(token, credential_id=other.id),
        lambda: broker.begin_consent(other.id, REDIRECT_URI, invite_token=token),
    ):
        with pytest.raises(ConsentFailed) as exc:
            refused()
        assert exc.value.reason == "invite-invalid"
    assert state(broker, other.id) == before
    assert broker.open_invite(token).id == mine.id  # the link itself is still good for mine

    past = datetime.now(UTC) - timedelta(hours=25)
    expired = token_of(broker.invites.create(mine.id, 24, now=past))
    for refused in (
        lambda: broker.open_invite(expired),
        lambda: broker.begin_consent(mine.id, REDIRECT_URI, invite_token=expired),
    ):
        with pytest.raises(ConsentFailed) as exc:
            refused()
        assert exc.value.reason == "invite-invalid"
        assert "expired" in str(exc.value)
    # the expired link replaced the earlier one: that one is closed now
    with pytest.raises(ConsentFailed):
        broker.open_invite(token)


def test_token_text_that_cannot_be_encoded_is_refused_as_invite_invalid(broker):
    credential = broker.add_credential(spec())
    genuine = token_of(broker.create_invite(credential.id))
    with pytest.raises(ConsentFailed) as refused:
        broker.open_invite("\ud800" + genuine[1:])
    assert refused.value.reason == "invite-invalid"
