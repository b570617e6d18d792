"""Notifications without a network: message content, SMTP URL parsing, the secret guard."""

from __future__ import annotations

import logging

import pytest

from broker.logs import redact
from broker.notify import Notifier, SmtpTarget, build_email
from tests.support.notify import INVITE, event, settings


def test_event_text_carries_title_action_and_link_on_separate_paragraphs():
    text = event().text()
    assert text.split("\n\n") == [
        "Consent needed for credential contoso-test",
        "Entra ID refused the refresh token: AADSTS50173: the grant was revoked.",
        "What to do: An admin of the partner tenant must consent again.",
        f"Consent link: {INVITE}",
    ]


def test_event_without_invite_has_no_link_line():
    assert "Consent link" not in event(kind="error", invite_url=None).text()


def test_event_fields_are_stable_for_machines():
    assert event().fields() == {
        "kind": "needs-consent", "credential_id": "contoso-test",
        "message": "Entra ID refused the refresh token: AADSTS50173: the grant was revoked.",
        "action": "An admin of the partner tenant must consent again.",
        "invite_url": INVITE, "occurred_at": "2030-01-02T03:04:05+00:00",
    }


@pytest.mark.parametrize("kind, title", [
    ("needs-consent", "Consent needed for credential c1"),
    ("error", "Credential c1 is in error"),
    ("token-expiring", "Refresh token of credential c1 expires soon"),
    ("secret-expiring", "Client secret of credential c1 expires soon"),
    ("rotation-failed", "Rotation failed for credential c1"),
    ("consent-invite", "Consent requested for credential c1"),
    ("broker-secret-expiring", "The broker's own secret c1 expires"),
])
def test_every_kind_has_a_title(kind, title):
    assert event(kind=kind, credential_id="c1").title == title


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind"):
        event(kind="bogus")


def test_email_has_plain_text_and_html_with_the_same_content():
    message = build_email(event(), sender="broker@example.com", recipients=["a@x.example",
                                                                              "b@x.example"])
    assert message["Subject"] == "[token broker] Consent needed for credential contoso-test"
    assert message["To"] == "a@x.example, b@x.example"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "What to do: An admin of the partner tenant must consent again." in plain
    assert INVITE in plain and f'href="{INVITE}"' in html
    assert "kind: needs-consent" in plain


def test_email_html_escapes_the_message():
    message = build_email(event(message="<script>x</script>"), sender="b@example.com",
                          recipients=["a@example.com"])
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("url, expected", [
    ("smtp://mail.example.com", (False, "mail.example.com", 25, None, None,
                                 "token-broker@mail.example.com")),
    ("smtps://mail.example.com", (True, "mail.example.com", 465, None, None,
                                  "token-broker@mail.example.com")),
    ("smtp://ops%40example.com:p%40ss@mail.example.com:587",
     (False, "mail.example.com", 587, "ops@example.com", "p@ss", "ops@example.com")),
    ("smtp://apikey:secret@relay.example.com:2525?from=broker%40example.com",
     (False, "relay.example.com", 2525, "apikey", "secret", "broker@example.com")),
])
def test_smtp_url_is_parsed(url, expected):
    target = SmtpTarget.parse(url)
    assert (target.implicit_tls, target.host, target.port, target.username, target.password,
            target.sender) == expected


@pytest.mark.parametrize("url, message", [
    ("http://mail.example.com", "must start with smtp:// or smtps://"),
    ("smtp://", "has no host"),
    ("smtp://mail.example.com:99999", "has an invalid port"),
])
def test_bad_smtp_url_is_refused(url, message):
    with pytest.raises(ValueError, match=message):
        SmtpTarget.parse(url)


def test_smtp_target_repr_hides_the_password():
    assert "hunter2-password" not in repr(SmtpTarget.parse(
        "smtp://u:hunter2-password@mail.example.com"))


def test_nothing_configured_is_a_no_op():
    notifier = Notifier(settings())
    assert not notifier.enabled
    notifier.notify(event())  # no error, nothing to send to


def test_email_needs_recipients_to_be_enabled():
    assert not Notifier(settings(smtp_url="smtp://mail.example.com")).enabled
    assert Notifier(settings(smtp_url="smtp://m.example.com", notify_email="a@b.example")).enabled


def test_an_event_carrying_a_registered_secret_is_refused(caplog):
    secret = "registered-secret-value-0123456789"
    redact.register(secret)
    # an unroutable webhook: if the guard failed, the send would be attempted and logged
    notifier = Notifier(settings(notify_webhook_url="http://127.0.0.1:9/hook"))
    with caplog.at_level(logging.INFO, logger="broker.notify"):
        notifier.notify(event(message=f"oops {secret}"))
    assert "refused: it would carry a secret value" in caplog.text
    assert "webhook" not in caplog.text


def test_an_event_carrying_a_jwt_is_refused(caplog):
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl"
    notifier = Notifier(settings(notify_webhook_url="http://127.0.0.1:9/hook"))
    with caplog.at_level(logging.INFO, logger="broker.notify"):
        notifier.notify(event(action=jwt_like))
    assert "refused" in caplog.text
