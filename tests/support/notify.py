"""Shared by the notification tests: settings with only the notify fields, an event, and a local
webhook that keeps what it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from broker.notify import Event

INVITE = "http://localhost:47400/invite/eyJjIjoiY29udG9zbyJ9.Zm9vYmFy"


def settings(**values):
    base = {"notify_webhook_url": None, "smtp_url": None, "notify_email": None}
    return SimpleNamespace(**{**base, **values})


def event(**values) -> Event:
    base = dict(kind="needs-consent", credential_id="contoso-test",
                message="Entra ID refused the refresh token: AADSTS50173: the grant was revoked.",
                action="An admin of the partner tenant must consent again.", invite_url=INVITE,
                occurred_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    return Event(**{**base, **values})


class Webhook:
    """A local Teams/Slack-style webhook that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        received = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, kind: str, credential_id: str) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind and e["credential_id"] == credential_id]


@contextmanager
def running_webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
