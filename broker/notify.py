"""Tell a human when a credential needs them: a webhook (Teams and Slack) and/or an email.

A notification says what happened, what to do and, where it helps, the invite link; it never
carries a token or a secret, and a message that would is refused rather than sent. Delivery is
best effort: a broken webhook or mail server is logged (without the credentials in its URL) and
never breaks the rotation or validation that raised the event.
"""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal
from urllib.parse import unquote, urlsplit

import requests

from broker.logs import get_logger, redact

TIMEOUT = 10.0  # seconds, per connection attempt; a slow endpoint must not hold up a rotation

Kind = Literal["needs-consent", "error", "token-expiring", "secret-expiring", "rotation-failed",
               "consent-invite", "broker-secret-expiring"]
# "consent-invite" is what `broker invite --email` sends to the admin who is asked to consent;
# "broker-secret-expiring" is about one of the broker's own secrets (the CPV or operator app's
# client secret, the signing key): its `credential_id` is that secret's name in the config vault
KINDS: tuple[str, ...] = (
    "needs-consent", "error", "token-expiring", "secret-expiring", "rotation-failed",
    "consent-invite", "broker-secret-expiring",
)
_TITLES = {
    "needs-consent": "Consent needed for credential {id}",
    "error": "Credential {id} is in error",
    "token-expiring": "Refresh token of credential {id} expires soon",
    "secret-expiring": "Client secret of credential {id} expires soon",
    "rotation-failed": "Rotation failed for credential {id}",
    "consent-invite": "Consent requested for credential {id}",
    "broker-secret-expiring": "The broker's own secret {id} expires",
}

log = get_logger(__name__)


@dataclass(frozen=True)
class Event:
    """Something a human must act on; every field is safe to show anywhere."""

    kind: Kind
    credential_id: str
    message: str
    action: str
    invite_url: str | None = None
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {', '.join(KINDS)}")

    @property
    def title(self) -> str:
        return _TITLES[self.kind].format(id=self.credential_id)

    def fields(self) -> dict[str, str | None]:
        """The machine-readable part, the same in the webhook body and the email."""
        return {
            "kind": self.kind,
            "credential_id": self.credential_id,
            "message": self.message,
            "action": self.action,
            "invite_url": self.invite_url,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
        }

    def text(self, *, paragraph: str = "\n\n") -> str:
        """Plain text that reads well in Teams, Slack and email alike (bare URLs autolink)."""
        parts = [self.title, self.message, f"What to do: {self.action}"]
        if self.invite_url:
            parts.append(f"Consent link: {self.invite_url}")
        return paragraph.join(parts)


class Notifier:
    """Sends events to the configured webhook and mail recipients; no configuration, no-op."""

    def __init__(self, settings) -> None:
        self.webhook_url: str | None = settings.notify_webhook_url or None
        self.smtp_url: str | None = settings.smtp_url or None
        self.recipients = [
            r.strip() for r in (settings.notify_email or "").split(",") if r.strip()
        ]

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or (self.smtp_url and self.recipients))

    def notify(self, event: Event) -> None:
        """Deliver `event` on every configured channel; never raises."""
        try:
            if not self.enabled:
                return
            if _leaks(event):
                log.error("notification for %s refused: it would carry a secret value",
                          event.credential_id)
                return
            if self.webhook_url:
                self._post_webhook(event)
            if self.smtp_url and self.recipients:
                self._send_mail(event, self.recipients)
        except Exception:  # a notifier must never break the work that raised the event
            log.exception("notification for %s failed unexpectedly", event.credential_id)

    def email(self, event: Event, to: list[str] | None = None) -> bool:
        """Email `event` to `to` (default: BROKER_NOTIFY_EMAIL) only; True once the server took it.

        For callers that must tell a person whether the mail went out (`broker invite --email`).
        """
        recipients = to or self.recipients
        if not self.smtp_url or not recipients:
            log.warning("email not sent: BROKER_SMTP_URL and a recipient are required")
            return False
        if _leaks(event):
            log.error("email for %s refused: it would carry a secret value", event.credential_id)
            return False
        return self._send_mail(event, recipients)

    def _post_webhook(self, event: Event) -> None:
        url = self.webhook_url or ""
        where = _safe_location(url)
        if urlsplit(url).scheme not in ("http", "https"):
            log.error("webhook %s not called: BROKER_NOTIFY_WEBHOOK_URL must be http(s)", where)
            return
        body = {"text": event.text(), **event.fields()}
        try:
            response = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("webhook %s failed for %s: %s", where, event.credential_id,
                        type(exc).__name__)
            return
        if response.status_code >= 300:
            log.warning("webhook %s answered %s for %s", where, response.status_code,
                        event.credential_id)
            return
        log.info("webhook %s notified: %s %s", where, event.kind, event.credential_id)

    def _send_mail(self, event: Event, recipients: list[str]) -> bool:
        try:
            target = SmtpTarget.parse(self.smtp_url or "")
        except ValueError as exc:
            log.error("email not sent: BROKER_SMTP_URL %s", exc)
            return False
        message = build_email(event, sender=target.sender, recipients=recipients)
        try:
            target.send(message)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            log.warning("email via %s failed for %s: %s", target.location, event.credential_id,
                        _smtp_reason(exc))
            return False
        log.info("email via %s sent: %s %s", target.location, event.kind, event.credential_id)
        return True


def build_email(event: Event, *, sender: str, recipients: list[str]) -> EmailMessage:
    """A plain-text email with an HTML alternative, both carrying the same fields."""
    message = EmailMessage()
    message["Subject"] = f"[token broker] {event.title}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    details = "\n".join(f"{k}: {v}" for k, v in event.fields().items() if v is not None)
    message.set_content(f"{event.text()}\n\n--\n{details}\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in event.fields().items() if v is not None
    )
    link = ""
    if event.invite_url:
        href = html.escape(event.invite_url, quote=True)
        link = f"<p><a href=\"{href}\">Open the consent link</a></p>"
    message.add_alternative(
        f"<html><body><h2>{html.escape(event.title)}</h2>"
        f"<p>{html.escape(event.message)}</p>"
        f"<p><strong>What to do:</strong> {html.escape(event.action)}</p>{link}"
        f"<table>{rows}</table></body></html>",
        subtype="html",
    )
    return message


@dataclass(frozen=True)
class SmtpTarget:
    """`smtp://user:pass@host:port` (STARTTLS when offered) or `smtps://` (implicit TLS).

    `?from=addr` sets the sender; otherwise the user name if it is an address, else
    `token-broker@<host>`.
    """

    implicit_tls: bool
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sender: str = ""

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("must start with smtp:// or smtps://")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError("has an invalid port") from exc
        if not parts.hostname:
            raise ValueError("has no host")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        sender = unquote(query.get("from", ""))
        if not sender:
            sender = username if username and "@" in username else f"token-broker@{parts.hostname}"
        implicit = parts.scheme == "smtps"
        return cls(implicit, parts.hostname, port or (465 if implicit else 25), username,
                   password, sender)

    @property
    def location(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT,
                                                    context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        with client:
            client.ehlo()
            encrypted = self.implicit_tls
            if not encrypted and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                encrypted = True
            if self.username:
                if not encrypted:
                    raise smtplib.SMTPException(
                        "server offers no STARTTLS; refusing to send the password in clear"
                    )
                client.login(self.username, self.password or "")
            client.send_message(message)


def _leaks(event: Event) -> bool:
    """True if any part of the event holds a registered secret or a token-shaped value."""
    text = "\n".join(str(v) for v in event.fields().values() if v is not None)
    return redact(text) != text


def _safe_location(url: str) -> str:
    """Scheme and host only: webhook paths and queries are themselves secrets (Slack, Teams)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')[:200]}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:200]
