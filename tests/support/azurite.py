"""Run Azurite (the Azure Storage emulator, from npm) on free loopback ports for the tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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
    log = open(location / "azurite.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(AZURITE), "--silent", "--location", str(location), "--skipApiVersionCheck",
         "--disableTelemetry", "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
         "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
         "--tableHost", "127.0.0.1", "--tablePort", str(table_port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        for port in (blob_port, queue_port):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=0.2
                ):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (location / "azurite.log").read_text()
                    raise RuntimeError(f"Azurite did not start:\n{log_text}")
                time.sleep(0.05)
        yield connection_string(blob_port, queue_port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
