"""The site's settings and its one Broker, kept on the app like flaskr's `db.py`.

Settings are loaded when the app is built; a `SettingsError` there is remembered rather than
raised, so the site can start and explain which setting is missing. The Broker is built on first
use, because building it may itself need settings the operator has not set yet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import Flask, current_app

from broker.errors import SettingsError
from broker.service import Broker
from broker.settings import Settings, load_settings

EXTENSION = "consent_web"


@dataclass
class SiteState:
    settings: Settings | None
    broker: Broker | None = None
    error: SettingsError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(settings: Settings | None, broker: Broker | None = None) -> SiteState:
    """Settings from the given Broker, the given Settings, or the environment, in that order."""
    if broker is not None:
        return SiteState(settings=broker.settings, broker=broker)
    if settings is not None:
        return SiteState(settings=settings)
    try:
        return SiteState(settings=load_settings())
    except SettingsError as exc:
        return SiteState(settings=None, error=exc)


def init_app(app: Flask, state: SiteState) -> None:
    app.extensions[EXTENSION] = state


def state() -> SiteState:
    return current_app.extensions[EXTENSION]


def get_settings() -> Settings:
    """The loaded settings; raises the remembered SettingsError if they could not be loaded."""
    current = state()
    if current.settings is None:
        raise current.error or SettingsError("settings are not loaded")
    return current.settings


def get_broker() -> Broker:
    """The app's Broker, built once (thread-safely) on first use."""
    current = state()
    if current.broker is None:
        settings = get_settings()
        with current.lock:
            if current.broker is None:
                current.broker = Broker(settings)
    return current.broker
