"""The consent site's requests, failures and logs to Application Insights, keyless.

App Service's Python auto-instrumentation agent cannot authenticate with Entra ID, and the
Application Insights of infra/ takes Entra-authenticated telemetry only (local authentication
off), so the site configures the Azure Monitor OpenTelemetry distro itself, with its managed
identity. That happens only when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (App Service);
locally and in tests the distro is never imported.

What leaves the site is what the broker's logs allow: the log handler gets the same redacting
filter as every other handler, and the query string of each request (the OAuth callback's
authorization code, an invite's signed token) is kept out of the request's recorded URL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from urllib.parse import quote

from flask import Flask

from broker import logs

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# "Authorization=AAD" for a system-assigned identity, "ClientId=<id>;Authorization=AAD" for a
# user-assigned one (the same setting the Functions host reads)
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"


def init_app(app: Flask, environ: Mapping[str, str] = os.environ) -> bool:
    """Send the site's telemetry when Application Insights is configured; returns whether."""
    connection_string = environ.get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return False
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    client_id = _client_id(environ.get(AUTHENTICATION_STRING, ""))
    configure_azure_monitor(
        connection_string=connection_string,
        credential=ManagedIdentityCredential(client_id=client_id)
        if client_id else ManagedIdentityCredential(),
        logger_name="",  # the root logger: the broker's and the site's records
        # the app exists already, so it is instrumented below rather than by class patching
        instrumentation_options={"flask": {"enabled": False}},
        enable_live_metrics=False,
        # every request: the site serves a few per partner per quarter, and the distro's
        # default (5 traces a second, rate limited) drops some of the first ones
        sampling_ratio=1.0,
    )
    FlaskInstrumentor().instrument_app(app)
    app.wsgi_app = PathOnlyTarget(app.wsgi_app)  # outside the instrumentation
    for handler in logging.getLogger().handlers:  # the distro's log handler included
        logs.install_filters(handler)
        if type(handler).__module__.startswith("opentelemetry"):
            handler.addFilter(_not_the_exporters_own)
    logs.quiet_sdks()  # the exporter's own HTTP calls stay out of the log it exports
    app.logger.info("telemetry: sending requests, failures and logs to Application Insights")
    return True


class PathOnlyTarget:
    """WSGI middleware: the request target the instrumentation records (`RAW_URI`,
    `REQUEST_URI`) is the path alone. The app still reads its query from `QUERY_STRING`."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        for name in ("RAW_URI", "REQUEST_URI"):
            value = environ.get(name)
            if isinstance(value, str) and "?" in value:
                environ[name] = value.split("?", 1)[0]
        if "RAW_URI" not in environ:  # else the URL is rebuilt with QUERY_STRING
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            environ["RAW_URI"] = quote(path)
        return self.wsgi_app(environ, start_response)


def _not_the_exporters_own(record: logging.LogRecord) -> bool:
    """The exporter's own warnings (a failed upload, a retry) stay out of what it uploads."""
    return not record.name.startswith(("azure.monitor", "opentelemetry", "azure.core",
                                       "azure.identity"))


def _client_id(authentication: str) -> str | None:
    parts = dict(p.split("=", 1) for p in authentication.split(";") if "=" in p)
    return parts.get("ClientId") or None
