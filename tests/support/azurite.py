"""Run Azurite (the Azure Storage emulator, from npm) on free loopback ports for the tests."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from tests.support.process import port_open, server_process

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's published development account (the same in every installation)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(blob_port: int, queue_port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT};"
    )


@contextlib.contextmanager
def running_azurite(location: Path) -> Iterator[str]:
    """Start Azurite's blob and queue services; yields an `AzureWebJobsStorage` string."""
    if not AZURITE.exists():
        raise RuntimeError("Azurite is not installed: run `make test` (it runs `npm install`).")
    location.mkdir(parents=True, exist_ok=True)
    blob_port, queue_port, table_port = _free_port(), _free_port(), _free_port()
    argv = [str(AZURITE), "--silent", "--location", str(location), "--skipApiVersionCheck",
            "--disableTelemetry", "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(table_port)]
    with server_process(argv, log=location / "azurite.log", what="Azurite",
                        ready=lambda: port_open(blob_port) and port_open(queue_port)):
        yield connection_string(blob_port, queue_port)
