"""Jinja filters that turn the broker's datetimes and counts into what an operator reads."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

STATUS_LABELS = {
    "pending-consent": "Pending consent",
    "active": "Active",
    "expiring": "Expiring",
    "needs-consent": "Needs consent",
    "error": "Error",
}


def init_app(app: Flask) -> None:
    app.add_template_filter(when)
    app.add_template_filter(ago)
    app.add_template_filter(days)
    app.add_template_filter(status_label)
    app.add_template_filter(short_version)
    app.add_template_filter(capitalize_first)
    app.add_template_filter(validation_words)


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def days(value: int | None) -> str:
    if value is None:
        return "—"
    if value < 0:
        return f"expired {-value} day{'s' if value != -1 else ''} ago"
    if value == 0:
        return "today"
    return f"{value} day{'s' if value != 1 else ''}"


# the last validation's result slug in words (the `validation` tag holds the slug)
VALIDATION_WORDS = {
    "ok": "Passed",
    "no-mfa": "Failed: the token does not show multi-factor authentication",
    "partner-center": "Failed: Partner Center refused the token",
    "needs-consent": "Failed: Entra ID refused the refresh token",
    "error": "Failed: Entra ID refused the app",
    "unavailable": "Not completed: Entra ID or Key Vault did not answer",
}


def validation_words(value: str | None) -> str:
    return VALIDATION_WORDS.get(value or "", f"Failed ({value})" if value else "Never validated")


def capitalize_first(value: str) -> str:
    return value[:1].upper() + value[1:]


def status_label(value: object) -> str:
    text = str(getattr(value, "value", value))
    return STATUS_LABELS.get(text, text.replace("-", " ").capitalize())


def short_version(value: str | None) -> str:
    return (value or "")[:8]
