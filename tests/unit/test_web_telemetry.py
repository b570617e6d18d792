"""The consent site's telemetry: the Azure Monitor distro loads only in Azure, and a request's
query string (an OAuth authorization code, an invite token) never reaches a span."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consent_web import telemetry

ROOT = Path(__file__).resolve().parents[2]
CODE = "0.AXYZ-authorization-code-that-must-not-leave"


def test_without_a_connection_string_nothing_is_configured_and_the_distro_is_not_imported():
    probe = (
        "import sys, os\n"
        "os.environ.pop('APPLICATIONINSIGHTS_CONNECTION_STRING', None)\n"
        "from flask import Flask\n"
        "from consent_web import telemetry\n"
        "assert telemetry.init_app(Flask('x')) is False\n"
        "print(sorted(m for m in sys.modules if m.startswith(('azure.monitor', 'opentelemetry'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_authentication_string_names_the_identity_the_distro_signs_in_with():
    assert telemetry._client_id("ClientId=1234;Authorization=AAD") == "1234"
    assert telemetry._client_id("Authorization=AAD") is None
    assert telemetry._client_id("") is None


def test_a_request_span_keeps_the_path_and_drops_the_query_string():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Flask("probe")

    @app.get("/consent/callback")
    def callback():
        return "ok"

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    app.wsgi_app = telemetry.PathOnlyTarget(app.wsgi_app)  # as init_app does
    try:
        response = app.test_client().get(f"/consent/callback?code={CODE}&state=s1")
        bare = Flask("bare")  # what the request looks like without the middleware
        bare.add_url_rule("/consent/callback", view_func=lambda: "ok")
        FlaskInstrumentor().instrument_app(bare, tracer_provider=provider)
        bare.test_client().get(f"/consent/callback?code={CODE}")
    finally:
        FlaskInstrumentor().uninstrument_app(app)
        FlaskInstrumentor().uninstrument_app(bare)
    assert response.status_code == 200
    ours, unguarded = exporter.get_finished_spans()
    assert CODE in repr(dict(unguarded.attributes))  # the instrumentation would record it
    attributes = dict(ours.attributes)
    assert CODE not in repr(attributes)
    assert attributes["http.target"] == "/consent/callback"
    assert attributes["http.route"] == "/consent/callback"


def test_the_app_still_reads_its_query_string_behind_the_middleware():
    app = Flask("probe")
    app.add_url_rule("/q", view_func=lambda: __import__("flask").request.args["code"])
    app.wsgi_app = telemetry.PathOnlyTarget(app.wsgi_app)
    assert app.test_client().get("/q?code=abc").text == "abc"
