"""The broker's blob container on the account of `AzureWebJobsStorage`, for adapters that keep
small shared state beside the leases (the consent site's sign-out revocations).

Adapters may not import `broker.locks` (plumbing, see the import contracts in pyproject.toml);
this is the one thing of it they need, exposed on purpose.
"""

from __future__ import annotations

from typing import Any


def broker_container(settings: Any) -> Any:
    """The `ContainerClient` the blob leases live in (created on first use by the leases)."""
    from broker.locks import BlobLeases

    return BlobLeases.from_settings(settings).container
