"""Serve WSGI apps on loopback, over TLS with the devstack certificate, each in its own thread.

Cheroot, not werkzeug's development server: werkzeug closes the connection after every
response, so every request paid a TCP and TLS handshake on both sides, which Azure's services
do not make their clients pay. Cheroot speaks HTTP/1.1 with keep-alive (idle connections wait
in a selector, not in a worker thread), sends `Content-Length` or chunked framing on every
response, and stops cleanly.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

HOST = "127.0.0.1"
# worker threads per service: enough for the benchmarks' concurrent clients on one machine
MIN_THREADS = 8
MAX_THREADS = 64
# seconds an idle keep-alive connection stays open (Azure's front ends keep them for minutes)
IDLE_TIMEOUT = 120
SHUTDOWN_TIMEOUT = 2

logging.getLogger("cheroot").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Tls:
    """The server certificate and key a TLS listener presents."""

    cert: Path
    key: Path

    def adapter(self) -> BuiltinSSLAdapter:
        adapter = BuiltinSSLAdapter(str(self.cert), str(self.key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        adapter.context = context
        return adapter


def tls_context(cert: Path, key: Path) -> Tls:
    return Tls(cert, key)


class Server:
    """One bound listener; `server_port` is known as soon as it is added."""

    def __init__(self, app, port: int, tls: Tls | None):
        self._server = wsgi.Server(
            (HOST, port), app, numthreads=MIN_THREADS, max=MAX_THREADS,
            timeout=IDLE_TIMEOUT, shutdown_timeout=SHUTDOWN_TIMEOUT,
            server_name="devstack", request_queue_size=128,
        )
        self._server.keep_alive_conn_limit = None  # as many idle connections as clients keep
        if tls is not None:
            self._server.ssl_adapter = tls.adapter()
        self._server.prepare()  # binds now, so a busy port fails `start` before anything runs

    @property
    def server_port(self) -> int:
        return self._server.bind_addr[1]

    def serve(self) -> None:
        self._server.serve()

    def stop(self) -> None:
        self._server.stop()


class Servers:
    """A set of threaded servers started and stopped together."""

    def __init__(self) -> None:
        self._servers: list[Server] = []
        self._threads: list[threading.Thread] = []

    def add(self, app, port: int, tls: Tls | None) -> Server:
        try:
            server = Server(app, port, tls)
        except OSError:
            self.stop()
            raise
        self._servers.append(server)
        return server

    def start(self) -> None:
        for server in self._servers:
            thread = threading.Thread(target=server.serve, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        # together: each server's loop notices the stop within its own poll interval
        stoppers = [threading.Thread(target=server.stop, daemon=True) for server in self._servers]
        for stopper in stoppers:
            stopper.start()
        for thread in (*stoppers, *self._threads):
            thread.join(timeout=5)
