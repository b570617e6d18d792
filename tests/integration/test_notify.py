"""Notifications over real sockets: a loopback HTTP receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from broker.notify import Notifier
from devstack.ca import ensure_certificates
from tests.support.notify import INVITE, event, settings


class WebhookReceiver:
    """A loopback HTTP server that records JSON bodies and answers with `status`."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.status, self.delay = status, delay
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(body))
                receiver.received.set()
                with contextlib.suppress(OSError):  # a client that timed out has gone
                    self.send_response(receiver.status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"1" if receiver.status == 200 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook/T000/B000/hook-secret-path"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailSink:
    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.content,
                                                       policy=email.policy.default),
                              session.ssl is not None, session.authenticated))
        return "250 OK"

    def __init__(self) -> None:
        self.messages: list[tuple] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_server(**kwargs) -> Iterator[tuple[MailSink, int]]:
    sink, port = MailSink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def tls(tmp_path, monkeypatch) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a localhost certificate and the CA trusted by default contexts."""
    ca_cert, cert, key = ensure_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_cert))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server


def test_webhook_receives_text_for_people_and_fields_for_machines():
    with WebhookReceiver() as hook:
        Notifier(settings(notify_webhook_url=hook.url)).notify(event())
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["text"].startswith("Consent needed for credential contoso-test\n\n")
    assert "What to do: An admin of the partner tenant must consent again." in body["text"]
    assert INVITE in body["text"]
    assert {k: body[k] for k in ("kind", "credential_id", "invite_url", "occurred_at")} == {
        "kind": "needs-consent", "credential_id": "contoso-test", "invite_url": INVITE,
        "occurred_at": "2030-01-02T03:04:05+00:00"}
    assert body["action"] == "An admin of the partner tenant must consent again."


@pytest.mark.parametrize("status", [400, 404, 500])
def test_failing_webhook_does_not_raise_and_logs_no_url_path(status, caplog):
    with WebhookReceiver(status=status) as hook, caplog.at_level(logging.INFO):
        Notifier(settings(notify_webhook_url=hook.url)).notify(event())
    assert hook.bodies  # it was called
    assert f"answered {status}" in caplog.text
    assert "hook-secret-path" not in caplog.text


def test_unreachable_webhook_does_not_raise(caplog):
    url = f"http://127.0.0.1:{_free_port()}/hook-secret-path"
    with caplog.at_level(logging.INFO):
        Notifier(settings(notify_webhook_url=url)).notify(event())
    assert "ConnectionError" in caplog.text and "hook-secret-path" not in caplog.text


def test_slow_webhook_times_out_without_raising(monkeypatch, caplog):
    monkeypatch.setattr("broker.notify.TIMEOUT", 0.3)
    with WebhookReceiver(delay=1.5) as hook, caplog.at_level(logging.INFO):
        Notifier(settings(notify_webhook_url=hook.url)).notify(event())
    assert "Timeout" in caplog.text


def test_plain_smtp_delivers_text_and_html():
    with smtp_server() as (sink, port):
        Notifier(settings(smtp_url=f"smtp://127.0.0.1:{port}",
                          notify_email="ops@example.com, oncall@example.com")).notify(event())
    assert len(sink.messages) == 1
    sender, rcpts, message, _, _ = sink.messages[0]
    assert sender == "token-broker@127.0.0.1"
    assert rcpts == ["ops@example.com", "oncall@example.com"]
    assert message["Subject"] == "[token broker] Consent needed for credential contoso-test"
    assert INVITE in message.get_body(("plain",)).get_content()
    assert INVITE in message.get_body(("html",)).get_content()


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"ops@example.com" and auth_data.password == b"mail-password-123"
    return AuthResult(success=ok, handled=False)


def test_smtp_uses_starttls_then_logs_in(tls):
    with smtp_server(tls_context=tls, require_starttls=True, authenticator=_authenticator,
                     auth_require_tls=True) as (sink, port):
        Notifier(settings(smtp_url=f"smtp://ops%40example.com:mail-password-123@localhost:{port}",
                          notify_email="admin@contoso.example")).notify(event())
    sender, rcpts, _, encrypted, authenticated = sink.messages[0]
    assert (sender, rcpts, encrypted, authenticated) == (
        "ops@example.com", ["admin@contoso.example"], True, True)


def test_smtps_uses_implicit_tls(tls):
    with smtp_server(ssl_context=tls) as (sink, port):
        Notifier(settings(smtp_url=f"smtps://localhost:{port}?from=broker%40example.com",
                          notify_email="ops@example.com")).notify(event())
    assert sink.messages[0][0] == "broker@example.com"


def test_wrong_smtp_password_is_logged_without_the_password(tls, caplog):
    with smtp_server(tls_context=tls, authenticator=_authenticator,
                     auth_require_tls=True) as (sink, port), caplog.at_level(logging.INFO):
        Notifier(settings(smtp_url=f"smtp://ops%40example.com:wrong-password-9@localhost:{port}",
                          notify_email="ops@example.com")).notify(event())
    assert not sink.messages
    assert "email via smtp://localhost" in caplog.text and "535" in caplog.text
    assert "wrong-password-9" not in caplog.text


def test_password_is_never_sent_without_tls(caplog):
    with smtp_server(authenticator=_authenticator, auth_require_tls=False) as (sink, port), \
            caplog.at_level(logging.INFO):
        Notifier(settings(smtp_url=f"smtp://u:clear-password-1@127.0.0.1:{port}",
                          notify_email="ops@example.com")).notify(event())
    assert not sink.messages
    assert "refusing to send the password in clear" in caplog.text
    assert "clear-password-1" not in caplog.text


def test_unreachable_smtp_server_does_not_raise(caplog):
    with caplog.at_level(logging.INFO):
        Notifier(settings(smtp_url=f"smtp://127.0.0.1:{_free_port()}",
                          notify_email="ops@example.com")).notify(event())
    assert "email via smtp://127.0.0.1" in caplog.text


def test_email_to_a_given_address_reports_delivery():
    with smtp_server() as (sink, port):
        notifier = Notifier(settings(smtp_url=f"smtp://127.0.0.1:{port}"))
        assert notifier.email(event(kind="consent-invite"), ["admin@contoso.example"])
    assert sink.messages[0][1] == ["admin@contoso.example"]
    assert not Notifier(settings()).email(event(), ["admin@contoso.example"])


def test_webhook_and_email_both_receive_one_event():
    with WebhookReceiver() as hook, smtp_server() as (sink, port):
        Notifier(settings(notify_webhook_url=hook.url, smtp_url=f"smtp://127.0.0.1:{port}",
                          notify_email="ops@example.com")).notify(event(kind="token-expiring"))
    assert hook.bodies[0]["kind"] == "token-expiring"
    assert "expires soon" in sink.messages[0][2]["Subject"]
