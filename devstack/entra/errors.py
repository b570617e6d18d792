"""AADSTS errors as Entra sends them: JSON from the token endpoint, query parameters on a
redirect, or an error page when the redirect URI itself cannot be trusted."""

from __future__ import annotations

import time
import uuid

from flask import jsonify, request

# what `/error?code=N` explains; the names are Entra's own error names
CATALOG = {
    50011: "InvalidReplyTo: the redirect URI is missing or does not match the app's registered "
           "redirect URIs.",
    50020: "UserUnauthorized: the user's account does not exist in the tenant of the app.",
    50034: "UserAccountNotFound: the account is not in this directory.",
    50058: "UserInformationNotProvided: no signed-in session (prompt=none).",
    50076: "UserStrongAuthClientAuthNRequired: multifactor authentication is required for this "
           "resource; sign in again with MFA.",
    50079: "UserStrongAuthEnrollmentRequired: the user must register a multifactor "
           "authentication method.",
    50074: "UserStrongAuthClientAuthNRequiredInterrupt: the user did not pass the MFA "
           "challenge.",
    50089: "Authentication failed due to flow token expired; sign in again.",
    50105: "EntitlementGrantsNotFound: the signed-in user is not assigned to a role the "
           "resource requires.",
    50126: "InvalidUserNameOrPassword.",
    50173: "FreshTokenNeeded: the grant was revoked; the user must sign in again.",
    50194: "The app is not multi-tenant; use a tenant-specific endpoint.",
    54005: "OAuth2 Authorization code was already redeemed.",
    65001: "DelegationDoesNotExist: the user or administrator has not consented to the app.",
    65004: "UserDeclinedConsent.",
    70003: "UnsupportedGrantType.",
    70008: "ExpiredOrRevokedGrant: the authorization code or refresh token expired.",
    70011: "InvalidScope.",
    70000: "InvalidGrant: the grant is invalid or was issued to another client.",
    700005: "InvalidGrantRedeemAgainstWrongTenant.",
    700016: "UnauthorizedClient_DoesNotMatchRequest: the application was not found in the "
            "directory.",
    700082: "ExpiredOrRevokedGrantInactiveToken: the refresh token expired due to inactivity.",
    7000215: "Invalid client secret provided.",
    7000218: "The request body must contain 'client_assertion' or 'client_secret'.",
    7000222: "InvalidClientSecretExpiredKeysProvided: the client secret has expired.",
    28000: "The scope contains more than one resource.",
    90002: "InvalidTenantName: the tenant was not found.",
    90015: "QueryStringTooLong.",
    90055: "TenantThrottlingError: too many requests.",
    90024: "RequestBudgetExceededError: a transient error has occurred; try again.",
    90023: "InvalidRequest: a parameter of the authentication request is not valid.",
    90094: "AdminConsentRequired: administrator consent is required.",
    90100: "InvalidRequestParameter: the parameter is empty or not valid.",
    70005: "UnsupportedResponseType.",
    70007: "UnsupportedResponseMode.",
    700027: "Client assertion failed signature validation.",
    500011: "InvalidResourceServicePrincipalNotFound: the resource was not found in the tenant.",
    501481: "The Code_Verifier does not match the code_challenge supplied in the authorization "
            "request.",
    501491: "InvalidCodeChallengeMethodInvalidSize.",
    650057: "Invalid resource: the app registration does not list permissions for it.",
    900023: "The tenant identifier is neither a valid DNS name nor a GUID.",
    900144: "The request body must contain a required parameter.",
    900561: "BadResourceRequestInvalidRequest: the endpoint accepts only POST requests.",
    900971: "No reply address provided.",
    9001023: "The grant type is not supported over the /common or /organizations endpoints.",
    9002313: "InvalidRequest: request is malformed or invalid.",
    1002012: "Client credential flows need a scope ending in /.default.",
}


class EntraError(Exception):
    """One AADSTS error; `status` is the token endpoint's HTTP status for it."""

    def __init__(self, code: int, error: str, message: str, *, status: int = 400,
                 suberror: str | None = None, retry_after: int | None = None):
        super().__init__(f"AADSTS{code}: {message}")
        self.code, self.error, self.message = code, error, message
        self.status, self.suberror, self.retry_after = status, suberror, retry_after
        self.trace_id = str(uuid.uuid4())
        self.correlation_id = _correlation_id()

    def timestamp(self, now: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))

    def description(self, now: float) -> str:
        return (f"AADSTS{self.code}: {self.message}\r\nTrace ID: {self.trace_id}\r\n"
                f"Correlation ID: {self.correlation_id}\r\nTimestamp: {self.timestamp(now)}")

    def error_uri(self, authority: str) -> str:
        return f"{authority}/error?code={self.code}"

    def as_json(self, now: float, authority: str):
        body = {
            "error": self.error,
            "error_description": self.description(now),
            "error_codes": [self.code],
            "timestamp": self.timestamp(now),
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "error_uri": self.error_uri(authority),
        }
        if self.suberror:
            body["suberror"] = self.suberror
        response = jsonify(body)
        response.status_code = self.status
        response.headers["x-ms-request-id"] = self.trace_id
        response.headers["client-request-id"] = self.correlation_id
        response.headers["Cache-Control"] = "no-store, no-cache"
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(self.retry_after)
        return response

    def as_params(self, now: float, authority: str) -> dict[str, str]:
        """The query (or form_post) parameters of an error redirected to the client."""
        return {
            "error": self.error,
            "error_description": self.description(now),
            "error_uri": self.error_uri(authority),
        }


def _correlation_id() -> str:
    """Entra echoes the client's `client-request-id` as the correlation id: a header, or the
    query parameter MSAL adds to token requests (x-client-SKU, client-request-id, ...)."""
    try:
        given = (request.headers.get("client-request-id")
                 or request.args.get("client-request-id") or "")
    except RuntimeError:  # outside a request
        given = ""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        return str(uuid.uuid4())


def missing(name: str) -> EntraError:
    return EntraError(900144, "invalid_request",
                      f"The request body must contain the following parameter: '{name}'.")


def malformed(detail: str = "") -> EntraError:
    message = "Invalid request. Request is malformed or invalid."
    return EntraError(9002313, "invalid_request", f"{message} {detail}".strip())


def tenant_not_found(name: str, error: str = "invalid_request") -> EntraError:
    return EntraError(
        90002, error,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def app_not_found(app_id: str, tenant_name: str, error: str = "unauthorized_client") -> EntraError:
    return EntraError(
        700016, error,
        f"Application with identifier '{app_id}' was not found in the directory "
        f"'{tenant_name}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You may have "
        "sent your authentication request to the wrong tenant.",
    )
