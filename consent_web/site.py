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
OPERATOR_AUTH_MODES = ("local", "entra", "easyauth")
ENTRA_OPERATOR_SETTINGS = ("BROKER_OPERATOR_TENANT_ID", "BROKER_OPERATOR_CLIENT_ID",
                           "BROKER_OPERATOR_CLIENT_SECRET")


@dataclass
class SiteState:
    settings: Settings | None
    broker: Broker | None = None
    error: SettingsError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(settings: Settings | None, service: Broker | None = None) -> SiteState:
    """Settings from the given Broker, the given Settings, or the environment, in that order."""
    if service is not None:
        return SiteState(settings=service.settings, broker=service)
    if settings is not None:
        return SiteState(settings=settings)
    try:
        loaded = load_settings()
        check_operator_settings(loaded)
        return SiteState(settings=loaded)
    except SettingsError as exc:
        return SiteState(settings=None, error=exc)


def check_operator_settings(settings: Settings) -> None:
    """The settings only the site reads (operator sign-in), checked when the site starts: the
    Functions app and the CLI load the same `Settings` and must not refuse to start over them."""
    if settings.operator_auth not in OPERATOR_AUTH_MODES:
        raise SettingsError("BROKER_OPERATOR_AUTH",
                            "BROKER_OPERATOR_AUTH must be local, entra or easyauth")
    if settings.operator_auth == "entra":
        for name in ENTRA_OPERATOR_SETTINGS:
            if not getattr(settings, name.removeprefix("BROKER_").lower()):
                raise SettingsError(name, f"{name} is not set")
    if settings.operator_auth == "easyauth" and not (settings.operator_group_id
                                                     or settings.operator_role):
        # else everyone App Service lets in (any user of the tenant) would be an operator
        raise SettingsError("BROKER_OPERATOR_GROUP_ID", "BROKER_OPERATOR_AUTH=easyauth needs "
                            "BROKER_OPERATOR_GROUP_ID or BROKER_OPERATOR_ROLE", hint=(
            "Set the object id of the operators' group, or the name of the operator app role, "
            "then start the site again."))


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
