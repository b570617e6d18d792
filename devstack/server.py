"""Serve WSGI apps on loopback, over TLS with the devstack certificate, each in its own thread."""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

HOST = "127.0.0.1"

logging.getLogger("werkzeug").setLevel(logging.WARNING)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class Servers:
    """A set of threaded servers started and stopped together."""

    def __init__(self) -> None:
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []

    def add(self, app, port: int, tls: ssl.SSLContext | None) -> BaseWSGIServer:
        server = make_server(HOST, port, app, threaded=True, ssl_context=tls)
        server.daemon_threads = True
        self._servers.append(server)
        return server

    def start(self) -> None:
        for server in self._servers:
            # a short poll interval: shutdown() waits for the loop to notice, per server
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
