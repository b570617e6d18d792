"""Builders shared by the notification tests: settings with only the notify fields, an event."""

from __future__ import annotations

from datetime import UTC, datetime
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
