"""The consent site: operators register credentials and partner admins consent; `broker/` does
the work. `create_app(test_config=None)` follows Flask's tutorial: defaults, then settings from
the environment, then the test override (`SETTINGS`, or a ready `BROKER`)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter

from broker import logs
from consent_web import (
    auth,
    consent,
    credentials,
    errors,
    filters,
    health,
    invites,
    operators,
    security,
    site,
    telemetry,
)
from consent_web.branding import display_name

__all__ = ["create_app"]


class SlugConverter(BaseConverter):
    """Credential ids in URLs; anything else is a 404 before a view runs."""

    regex = r"[a-z0-9][a-z0-9-]{0,62}"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    test_config = dict(test_config or {})
    app = Flask(__name__)
    state = site.load(test_config.pop("SETTINGS", None), test_config.pop("BROKER", None))
    app.config.from_mapping(_defaults(state))
    app.config.update(test_config)
    if not app.testing:
        _configure_logging()
        telemetry.init_app(app)  # only in Azure (APPLICATIONINSIGHTS_CONNECTION_STRING)
    site.init_app(app, state)
    app.extensions["local_sign_in"] = test_config.get("LOCAL_SIGN_IN") or operators.LocalSignIn()
    app.url_map.converters["slug"] = SlugConverter

    security.init_app(app)
    errors.init_app(app)
    filters.init_app(app)
    versions = _static_versions(app)
    app.add_template_global(
        lambda name: url_for("static", filename=name, v=versions.get(name)), "asset")
    app.context_processor(_template_globals)
    app.before_request(_explain_missing_settings)
    app.before_request(operators.require_operator)
    for blueprint in (auth.bp, consent.bp, credentials.bp, health.bp, invites.bp):
        app.register_blueprint(blueprint)

    # App Service terminates TLS and forwards one hop: trust X-Forwarded-* from it only
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    return app


def _static_versions(app: Flask) -> dict[str, str]:
    folder = Path(app.static_folder or "")
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in folder.iterdir() if path.is_file()}


def _configure_logging() -> None:
    """The broker's redacting, correlated logging on the root handlers (gunicorn's included),
    without the Azure SDK's per-request header dumps."""
    logs.configure()
    logs.quiet_sdks()


def _defaults(state: site.SiteState) -> dict[str, Any]:
    settings = state.settings
    secure = bool(settings and settings.public_url.lower().startswith("https://"))
    return {
        # without settings there is no stable key; the setup page needs no session anyway
        "SECRET_KEY": settings.secret_key if settings else secrets.token_urlsafe(32),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        # static URLs carry a content hash (see `asset`), so browsers may keep them a day
        "SEND_FILE_MAX_AGE_DEFAULT": 86400,
        "PERMANENT_SESSION_LIFETIME": operators.OPERATOR_LIFETIME,
        "SESSION_COOKIE_NAME": "__Host-broker" if secure else "broker",
        "SESSION_COOKIE_SECURE": secure,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the operator's session
        "WTF_CSRF_SSL_STRICT": False,  # replaced by the Origin check in security.py
    }


def _explain_missing_settings():
    current = site.state()
    if current.settings is None and request.endpoint not in ("static", "health.healthz"):
        return render_template("setup.html", missing=[], problem=current.error), 503
    return None


def _template_globals() -> dict[str, Any]:
    settings = site.state().settings
    return {
        "operator": g.get("operator"),
        "warn_days": settings.warn_days if settings else 30,
        "cpv_client_id": settings.cpv_client_id if settings else "",
        "display_name": display_name(settings),
    }

