"""The broker's errors: one small hierarchy, mapped once from SDK and MSAL failures.

    BrokerError                 .hint: what the operator should do next; .code: the reason
    ├── InvalidInput            .errors: {field: message}; nothing was changed
    │   └── CredentialNotFound  .credential_id
    ├── SettingsError           .setting: the variable that is missing or invalid
    ├── AccessDenied            .role, .scope: the Azure role to grant, and where
    ├── NeedsConsent            the grant is dead; an admin must consent again
    ├── ConsentFailed           .reason: one of CONSENT_FAILURE_REASONS
    ├── AppMisconfigured        the app (client id/secret) is wrong; the stored token is kept
    ├── TransientFailure        .retry_after: seconds or None; try again later
    ├── Conflict                another writer holds the lease, or a newer version appeared
    └── InvalidMessage          a queue message that is not ours; dropped, never retried

`broker.azure_errors` maps Azure SDK, Storage and MSAL failures into this tree, by one set of
rules. Adapters show `str(exc)` and `exc.hint` to people; an interactive one replaces the hint
of a TransientFailure (which speaks to unattended jobs: "will be retried"). Neither message nor
hint ever contains a token, a client secret or a URL carrying one: they are built from ids,
field names and error codes only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    default_message = "The broker could not complete the operation."
    hint = "Check the broker's log for the correlation id of this operation."
    code: str | None = None  # a reason code (`AADSTS50173`, see broker.reasons) when known

    def __init__(self, message: str | None = None, *, hint: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message or self.default_message)
        if hint is not None:
            self.hint = hint
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(BrokerError):
    default_message = "The input is not valid."
    hint = "Correct the fields named in the error and try again; nothing was changed."

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: Mapping[str, str] | None = None,
        hint: str | None = None,
    ) -> None:
        self.errors = dict(errors or {})
        if message is None and self.errors:
            message = "; ".join(f"{name}: {text}" for name, text in self.errors.items())
        super().__init__(message, hint=hint)


class CredentialNotFound(InvalidInput):
    hint = "Run `broker credentials list` to see the credential ids that exist."

    def __init__(self, credential_id: str, message: str | None = None, *,
                 hint: str | None = None) -> None:
        self.credential_id = credential_id
        super().__init__(
            message or f"No credential with id {credential_id!r}.",
            errors={"id": "No credential with this id."},
            hint=hint,
        )


class SettingsError(BrokerError):
    hint = "Set the named variable in the environment or in .env, then start again."

    def __init__(self, setting: str, message: str | None = None, *, hint: str | None = None):
        self.setting = setting
        super().__init__(message or f"{setting} is missing or invalid.", hint=hint)


class AccessDenied(BrokerError):
    """An Azure service refused this identity (401/403); `role` on `scope` lets it in."""

    default_message = "An Azure service denied this identity access."
    hint = "Assign the identity the Azure role the error names, where it names it."

    def __init__(self, message: str | None = None, *, role: str, scope: str,
                 action: str | None = None, hint: str | None = None) -> None:
        # `action`: the data action refused, when the service names it (Key Vault's RBAC does)
        self.role, self.scope, self.action = role, scope, action
        super().__init__(message, hint=hint or (
            f"Assign the role '{role}' on {scope} to the identity the broker runs as "
            "(DefaultAzureCredential: the managed identity, `az login` or AZURE_* variables)."))


class NeedsConsent(BrokerError):
    default_message = "The credential's grant is no longer valid."
    hint = ("An admin of the partner tenant must consent again: send them `broker invite <id>` "
            "or open the credential on the consent site.")


CONSENT_FAILURE_REASONS = (
    "cancelled", "wrong-tenant", "no-mfa", "not-admin-agent", "admin-consent-required",
    "state-mismatch", "code-rejected", "invite-invalid",
)

_CONSENT_HINTS = {
    "cancelled": "The sign-in was cancelled; start the consent again when ready.",
    "wrong-tenant": "Sign in with an account of the credential's partner tenant.",
    "no-mfa": "The admin must register and use multi-factor authentication, then consent again.",
    "not-admin-agent": "Sign in with an account holding the Admin Agent role in Partner Center.",
    "admin-consent-required": "A Global Administrator of the partner tenant must consent.",
    "state-mismatch": "The sign-in did not match this session; start the consent again.",
    "code-rejected": "The sign-in code was not accepted (it may have been used); start again.",
    "invite-invalid": "The invite link is expired, used or not genuine; ask the person who "
                      "sent it for a new one.",
}


class ConsentFailed(BrokerError):
    default_message = "Consent did not complete."

    def __init__(self, reason: str, message: str | None = None, *, hint: str | None = None):
        if reason not in CONSENT_FAILURE_REASONS:
            raise ValueError(f"unknown consent failure reason {reason!r}")
        self.reason = reason
        super().__init__(message, hint=hint if hint is not None else _CONSENT_HINTS[reason])


class AppMisconfigured(BrokerError):
    default_message = "The app registration was refused by Entra ID."
    hint = ("Fix the app: check the client id, renew an expired client secret with "
            "`broker credentials edit <id>`; the stored token was kept.")


class TransientFailure(BrokerError):
    default_message = "A service is temporarily unavailable."
    hint = ("Nothing was lost; run it again once the service answers (the rotation worker "
            "retries on its own).")

    def __init__(self, message: str | None = None, *, retry_after: float | None = None,
                 hint: str | None = None, maybe_stored: bool = False) -> None:
        self.retry_after = retry_after
        # a write went out and its answer was lost: it may have been stored (say so, never
        # "nothing was stored")
        self.maybe_stored = maybe_stored
        super().__init__(message, hint=hint)


class Conflict(BrokerError):
    default_message = "Another operation is changing this credential."
    hint = "Wait for the other operation to finish, then look at the credential again."


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def network_cause(exc: BaseException) -> str:
    """What went wrong on the network, in words: "Connection refused", "timed out", ..."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate is not trusted here (REQUESTS_CA_BUNDLE)"
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().rstrip(".")
    for words in ("timed out", "Connection aborted", "RemoteDisconnected", "Connection reset"):
        if words in text:
            return "the connection was closed before an answer" if words == "RemoteDisconnected" \
                else words
    return type(getattr(exc, "inner_exception", None) or exc).__name__


class InvalidMessage(BrokerError):
    """A queue message that is not one of ours; it is dropped, never retried."""

    default_message = "The queue message is not a rotation request."
    hint = "Only the broker should write to the rotations queue."
