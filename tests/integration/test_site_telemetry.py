"""The consent site in Azure sends its requests and logs to Application Insights keyless: the
real app factory (not in testing mode) with `APPLICATIONINSIGHTS_CONNECTION_STRING` set, in a
process of its own (the distro sets process-wide providers), signs in with its managed identity
(devstack's endpoint, as App Service's) and posts to an ingestion endpoint over TLS that is a
local server here. Nothing sent carries the instrumentation key as the only proof of identity,
the OAuth callback's authorization code, or the exporter's own chatter."""

from __future__ import annotations

import gzip
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = "0.AXYZ-authorization-code-that-must-stay-home"
SITE = f"""
import logging
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from consent_web import create_app

app = create_app()
client = app.test_client()
for url in ("/healthz", "/consent/callback?code={CODE}&state=made-up"):
    client.get(url).close()  # the request's span ends when its response is closed
logging.getLogger("consent_web").warning("probe: a line for Application Insights")
assert trace.get_tracer_provider().force_flush(10_000)
assert get_logger_provider().force_flush(10_000)
"""


class Ingestion:
    """A stand-in for Application Insights' ingestion endpoint (`POST /v2.1/track`, TLS)."""

    def __init__(self, certificate: Path, key: Path) -> None:
        self.requests: list[tuple[str, str, list[dict]]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                requests.append((self.path, self.headers.get("Authorization", ""),
                                 json.loads(body)))
                reply = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def items(self) -> list[dict]:
        return [item for _, _, batch in self.requests for item in batch]


@pytest.fixture
def ingestion(devstack) -> Iterator[Ingestion]:
    endpoint = Ingestion(devstack.state_dir / "server.pem", devstack.state_dir / "server-key.pem")
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_the_site_sends_requests_and_logs_with_its_identity_and_without_the_code(
        devstack, ingestion, tmp_path):
    key = "00000000-0000-0000-0000-0000000000a1"
    env = {**devstack.env, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "BROKER_STATE_DIR": str(tmp_path),
           "APPLICATIONINSIGHTS_CONNECTION_STRING":
               f"InstrumentationKey={key};IngestionEndpoint={ingestion.url}",
           "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
           # usage statistics of the SDK itself go to Microsoft, not to this endpoint
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}
    done = subprocess.run([sys.executable, "-c", SITE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ingestion.requests, "nothing reached the ingestion endpoint"
    for path, authorization, _ in ingestion.requests:
        assert path == "/v2.1/track"
        scheme, _, token = authorization.partition(" ")
        assert scheme == "Bearer"  # Entra ID: local authentication is off in Azure
        claims = jwt.decode(token, options={"verify_signature": False})
        assert "monitor.azure.com" in claims["aud"]
    items = ingestion.items()
    requests = [i["data"]["baseData"] for i in items
                if i["name"] == "Microsoft.ApplicationInsights.Request"]
    assert {r["url"].split("//", 1)[1].split("/", 1)[1] for r in requests} >= {
        "healthz", "consent/callback"}
    messages = [i["data"]["baseData"]["message"] for i in items
                if i["name"] == "Microsoft.ApplicationInsights.Message"]
    assert "probe: a line for Application Insights" in messages
    assert all("Retrying" not in m and "token" not in m.lower() for m in messages), messages
    assert CODE not in json.dumps(items)
    assert all(i["iKey"] == key for i in items)
