"""One mapping from Azure SDK (azure-core), Azure Storage and MSAL failures to broker errors.

Key Vault, the rotations queue, the blob leases, the vault's pacing blob, Entra ID through
MSAL: every call that leaves the process passes here, so the same failure means the same thing
wherever it happens:

    unreachable (ServiceRequest/ResponseError, requests' errors)  TransientFailure
    HTTP 429 or 5xx                          TransientFailure (.retry_after from the header)
    401 / ClientAuthenticationError, 403     AccessDenied (.role on .scope: what to grant)
    409                                      Conflict
    anything else (400, an unexpected 404)   BrokerError naming the service and the status
    MSAL: an Entra error body                identity.classify (NeedsConsent, AppMisconfigured)
    MSAL: an authority it cannot discover    AppMisconfigured

A caller with rules of its own for a status (the vault: 404 is CredentialNotFound, 403 on a
disabled version is NeedsConsent; the queue: a pop receipt someone else holds) applies them
first and hands the rest here. Messages carry the service, the operation and the status or
error code, never a value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from broker.errors import AccessDenied, BrokerError, Conflict, TransientFailure, network_cause
from broker.logs import redact


@dataclass(frozen=True)
class Target:
    """What was called, as a person names it, and the least role that lets an identity use it."""

    name: str
    role: str
    scope: str


KEY_VAULT = Target("Key Vault", "Key Vault Secrets Officer", "the vault")
KEY_VAULT_READER = Target("Key Vault", "Key Vault Secrets User",
                          "the secret (rt-<id>, and cs-<id> for own-app credentials)")
LEASES = Target("Azure Storage (leases)", "Storage Blob Data Contributor",
                "the storage account of AzureWebJobsStorage")
PACING = Target("Azure Storage (the vault's pacing blob)", "Storage Blob Data Contributor",
                "the storage account of AzureWebJobsStorage")


def queue(name: str) -> Target:
    return Target(f"Queue {name}", "Storage Queue Data Contributor",
                  "the storage account of AzureWebJobsStorage")


def retry_after(exc: Any) -> float | None:
    """The Retry-After header of a failed response, in seconds, when there is one."""
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        return float(exc.response.headers.get("Retry-After"))
    return None


def summary(exc: Any) -> str:
    """The service's own first line about the failure, redacted and short."""
    text = getattr(getattr(exc, "error", None), "message", None) or getattr(exc, "message", "")
    return redact(str(text).splitlines()[0][:300]) if text else type(exc).__name__


def from_azure(exc: Exception, target: Target, what: str | None = None) -> BrokerError:
    """The broker error for an azure-core exception raised on `target` (while trying to `what`,
    when the caller says)."""
    from azure.core import exceptions as az

    if isinstance(exc, BrokerError):
        return exc
    doing = f" while trying to {what}" if what else ""
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
        return TransientFailure(f"{target.name} could not be reached{doing}: "
                                f"{network_cause(exc)}.")
    if isinstance(exc, az.ClientAuthenticationError):
        return AccessDenied(f"{target.name} refused this identity{doing}: {summary(exc)}",
                            role=target.role, scope=target.scope)
    status = getattr(exc, "status_code", None) or 0
    if status == 429 or status >= 500:
        return TransientFailure(f"{target.name} answered {status}{doing}: {summary(exc)}",
                                retry_after=retry_after(exc))
    if status in (401, 403):
        return AccessDenied(f"{target.name} denied the operation{doing} ({status}): "
                            f"{summary(exc)}", role=target.role, scope=target.scope)
    if status == 409:
        return Conflict(f"{target.name} reported a conflict{doing}: {summary(exc)}")
    if status:
        return BrokerError(f"{target.name} answered {status}{doing}: {summary(exc)}")
    return BrokerError(f"{target.name} failed{doing} ({type(exc).__name__}).")


@contextlib.contextmanager
def azure_errors(target: Target, what: str | None = None) -> Iterator[None]:
    """Run a block of SDK calls; azure-core failures leave it as broker errors."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:
        raise from_azure(exc, target, what) from exc


def from_msal(exc: BaseException, *, status: int = 0, retry_after: float | None = None,
              code_flow: bool = False, authority: str | None = None) -> BrokerError:
    """The broker error for an exception out of MSAL; `status` and `retry_after` are those of
    the last HTTP response when the caller recorded them (MSAL does not pass them on), and
    `authority` names where Entra ID was looked for."""
    import requests
    from msal.exceptions import MsalServiceError

    from broker.identity import classify

    if isinstance(exc, requests.RequestException):
        where = f"Entra ID at {authority}" if authority else "Entra ID"
        return TransientFailure(
            f"{where} could not be reached ({network_cause(exc)}).",
            hint="Check BROKER_AUTHORITY_HOST and the network, then run it again; the rotation "
                 "worker retries on its own.")
    if status == 429 or status >= 500:
        return classify({"status_code": status, "retry_after": retry_after})
    if code_flow and isinstance(exc, ValueError | RuntimeError) and status < 400:
        # MSAL's own state or nonce check failed before or after the exchange
        from broker.errors import ConsentFailed

        return ConsentFailed(
            "state-mismatch",
            "The sign-in response does not belong to this consent (state or nonce mismatch).",
            hint="start the consent again")
    if isinstance(exc, MsalServiceError):
        return classify({"error": exc.error, "error_description": exc.error_description})
    if isinstance(exc, ValueError) or 400 <= status < 500:
        from broker.errors import AppMisconfigured

        return AppMisconfigured(
            f"Entra ID does not know this authority or tenant ({status or type(exc).__name__}).",
            hint="check the credential's tenant id and BROKER_AUTHORITY_HOST")
    return BrokerError(f"Unexpected answer from Entra ID ({type(exc).__name__}).",
                       hint="try again; if it persists, check BROKER_AUTHORITY_HOST")
