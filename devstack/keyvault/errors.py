"""Key Vault's error responses: `{"error": {"code", "message", "innererror"?}}` and a status.

Every failure the emulator reports is a `VaultError`; the messages are Key Vault's own wording
where it is publicly known, so clients and humans see what they would see against Azure.
"""

from __future__ import annotations

from flask import Response, jsonify

NOT_FOUND_HELP = (
    "If you recently deleted this secret you may be able to recover it using the correct "
    "recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)


class VaultError(Exception):
    """An error response: HTTP status, Key Vault error code, message, optional inner code."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def response(self) -> Response:
        error: dict = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        response = jsonify(error=error)
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


def bad_parameter(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def invalid_property() -> VaultError:
    # Key Vault's wording for a body property it rejects (too many tags, too long, wrong type)
    return bad_parameter("Property has invalid value\r\n")


def secret_not_found(name: str, version: str | None = None) -> VaultError:
    ident = f"{name}/{version}" if version else name
    return VaultError(
        404, "SecretNotFound",
        f"A secret with (name/id) {ident} was not found in this key vault. {NOT_FOUND_HELP}",
    )


def deleted_secret_not_found(name: str) -> VaultError:
    return VaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")


def deleted_but_recoverable(name: str) -> VaultError:
    return VaultError(
        409, "Conflict",
        f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
        "reused; in this state, the secret can only be recovered or purged.",
        inner="ObjectIsDeletedButRecoverable",
    )


def being_deleted(name: str) -> VaultError:
    # azure-sdk-for-js keyvault-keys recordings: DELETE /deletedkeys/<name> during the delete
    # is 409 {"code": "Conflict", "message": "Key is currently being deleted.", "innererror":
    # {"code": "ObjectIsBeingDeleted"}}
    del name
    return VaultError(409, "Conflict", "Secret is currently being deleted.",
                      inner="ObjectIsBeingDeleted")


def purge_protected(vault: str) -> VaultError:
    # Key Vault's words, as azurerm and az quote them for a vault with purge protection
    return VaultError(
        403, "Forbidden",
        'Operation "purge" is not allowed because purge protection is enabled for this vault. '
        "Key Vault service will automatically purge it after the retention period has passed. "
        f"Vault: {vault};location=devstack",
    )


def malformed_backup() -> VaultError:
    return VaultError(400, "Malformed backup blob",
                      "Backup blob contains invalid or corrupt version.")


def not_found_path() -> VaultError:
    return VaultError(404, "NotFound", "The requested resource was not found.")


def already_exists(name: str) -> VaultError:
    return VaultError(409, "Conflict", f"Secret {name} already exists.")


def disabled(operation: str = "get") -> VaultError:
    return VaultError(
        403, "Forbidden", f"Operation {operation} is not allowed on a disabled secret.",
        inner="SecretDisabled",
    )


def unauthorized(message: str, challenge: str) -> VaultError:
    return VaultError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})


def throttled(retry_after: int) -> VaultError:
    return VaultError(
        429, "Throttled",
        "Request was not processed because too many requests were received. "
        "Reason: VaultRequestTypeLimitReached",
        headers={"Retry-After": str(retry_after)},
    )


def unavailable() -> VaultError:
    return VaultError(
        503, "ServiceUnavailable",
        "The service is temporarily unavailable. Please retry the request later.",
    )
