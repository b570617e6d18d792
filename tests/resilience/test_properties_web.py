"""The consent site against any query string and any form: a 3xx or 4xx, never a 500, and no
token version written by anything short of a completed consent.

The site runs on the real Broker against the session devstack (Flask's test client; CSRF and
the same-origin check are on, as in production). A consent in progress is started the way an
admin starts one, from an invite link, so the callback has a real flow to compare against.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent_web import create_app
from tests.support.broker import make_broker, spec

CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
CALLBACK_KEYS = ("code", "state", "error", "error_description", "error_codes", "suberror",
                 "session_state", "client_info", "error_uri")
FORM_FIELDS = ("csrf_token", "id", "environment", "product", "marketplace", "tenant_id",
               "client_id", "client_secret", "secret_expires_on", "next_step")

values = st.text(max_size=120)
params = st.dictionaries(st.sampled_from(CALLBACK_KEYS) | st.text(max_size=12), values,
                         max_size=6)


@pytest.fixture
def site(devstack, tmp_path):
    broker = make_broker(devstack, tmp_path)
    app = create_app({"BROKER": broker, "TESTING": True})
    credential = broker.add_credential(spec())
    invite = broker.create_invite(credential.id)
    return broker, app, credential.id, invite.url.rsplit("/", 1)[1]


def csrf_from(response) -> str:
    found = CSRF.search(response.get_data(as_text=True))
    assert found, response.status_code
    return found.group(1)


def begin_by_invite(client, token: str) -> str:
    """Open the invite and start the sign-in, as the admin's browser does; returns the state
    the authority was sent."""
    landing = client.get(f"/invite/{token}")
    assert landing.status_code == 200
    started = client.post(f"/invite/{token}", data={"csrf_token": csrf_from(landing)})
    assert started.status_code == 303
    return parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]


def versions(broker, credential_id) -> list[str]:
    return [v.version for v in broker.versions(credential_id)]


def test_any_callback_query_is_a_3xx_or_4xx_and_stores_nothing(site):
    broker, app, credential_id, token = site
    before = versions(broker, credential_id)
    statuses = set()

    @settings(max_examples=80, deadline=None)
    @given(query=params, raw=st.none() | st.binary(max_size=200),
           pending=st.booleans(), with_state=st.booleans())
    def callback(query, raw, pending, with_state):
        client = app.test_client()
        if pending:
            state = begin_by_invite(client, token)
            if with_state:  # the genuine state, with whatever else came along
                query = {**query, "state": state}
        # a raw query string reaches the app as WSGI gives it: bytes as latin-1 code points
        response = client.get("/consent/callback", query_string=query if raw is None
                              else raw.decode("latin-1"))
        assert 300 <= response.status_code < 500, (response.status_code, query, raw)
        statuses.add(response.status_code)

    callback()
    assert versions(broker, credential_id) == before
    assert statuses <= {400, 403, 404, 409}, statuses


def test_a_callback_with_a_non_ascii_state_is_refused_not_a_500(site):
    broker, app, credential_id, token = site
    client = app.test_client()
    begin_by_invite(client, token)
    response = client.get("/consent/callback", query_string={"state": "\u00e9t\u00e9"})
    assert response.status_code == 400
    assert versions(broker, credential_id)[0] == broker.versions(credential_id)[0].version


def test_any_invite_path_or_form_is_a_3xx_or_4xx_and_stores_nothing(site):
    broker, app, credential_id, token = site
    before = versions(broker, credential_id)

    @settings(max_examples=80, deadline=None)
    @given(text=st.text(max_size=300) | st.just(token), form=st.dictionaries(
        st.sampled_from(FORM_FIELDS) | st.text(max_size=10), values, max_size=5),
        with_csrf=st.booleans())
    def invite(text, form, with_csrf):
        client = app.test_client()
        path = f"/invite/{quote(text, safe='')}"
        landing = client.get(path)
        genuine = text == token
        if genuine:
            assert landing.status_code == 200
        else:  # refused, or a path the router normalises first ("//" merged): never a page
            assert 300 <= landing.status_code < 500, landing.status_code
        if with_csrf and genuine:
            form = {**form, "csrf_token": csrf_from(landing)}
        posted = client.post(path, data=form)
        assert 300 <= posted.status_code < 500, posted.status_code
        if posted.status_code == 303:  # only the genuine link with its form starts a sign-in
            assert genuine and with_csrf
            assert posted.headers["Location"].startswith(broker.settings.authority_host)

    invite()
    assert versions(broker, credential_id) == before


def test_any_operator_form_is_saved_or_refused_without_a_500(site):
    broker, app, credential_id, _ = site
    client = app.test_client()
    signed_in = client.get(f"/auth/local?token={app.extensions['local_sign_in'].issue()}")
    assert signed_in.status_code == 302
    current = {"versions": versions(broker, credential_id)}

    @settings(max_examples=60, deadline=None)
    @given(form=st.dictionaries(st.sampled_from(FORM_FIELDS) | st.text(max_size=10), values,
                                max_size=9),
           target=st.sampled_from(["/add", f"/credentials/{credential_id}/edit"]))
    def post(form, target):
        page = client.get(target)
        data = {**form, "csrf_token": csrf_from(page)} if "csrf_token" not in form else form
        response = client.post(target, data=data)
        assert response.status_code in (303, 400), response.status_code
        if response.status_code == 400:  # refused: the credential is as it was
            assert versions(broker, credential_id) == current["versions"]
        elif target == "/add":  # saved: a new credential, which this test removes again
            broker.remove_credential(data["id"].strip().lower())
        else:  # saved: a new app or tenant adds a placeholder version, nothing else does
            current["versions"] = versions(broker, credential_id)

    post()
