"""Every failure becomes a page that says what happened and what to do; never a traceback.

Broker errors that escape a view map to statuses here, once. Bad input is always a 4xx; the 500
handler exists for bugs, and the tests prove bad input never reaches it.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from broker.errors import (
    AppMisconfigured,
    BrokerError,
    Conflict,
    ConsentFailed,
    CredentialNotFound,
    InvalidInput,
    NeedsConsent,
    SettingsError,
    TransientFailure,
)

TITLES = {
    400: "That request could not be used",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too much data",
    502: "Azure refused the request",
    503: "Temporarily unavailable",
}
DESCRIPTIONS = {
    400: "Something in the request was not valid.",
    401: "Sign in as an operator to continue.",
    403: "You do not have access to this page or action.",
    404: "There is nothing at this address. If you followed a link, it may be out of date.",
    405: "This address does not accept that kind of request.",
    413: "The form sent more data than this site accepts.",
}


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(SettingsError, _settings)
    app.register_error_handler(BrokerError, _broker)
    app.register_error_handler(Exception, _unexpected)


def page(status: int, description: str | None = None, *, title: str | None = None,
         hint: str | None = None, errors: list[str] | None = None):
    body = render_template(
        "errors/error.html", status=status, title=title or TITLES.get(status, "Error"),
        description=description or DESCRIPTIONS.get(status, ""), hint=hint, errors=errors or [],
    )
    return body, status


def _csrf(exc: CSRFError):
    return page(400, "This form expired or was already sent (its security token did not match). "
                     "Go back, reload the page and try again.", title="Please try again")


def _http(exc: HTTPException):
    status = exc.code or 500
    if status >= 500 and status != 503:
        return _unexpected(exc)
    custom = exc.description if exc.description != type(exc).description else None
    response = page(status, custom)
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        return response[0], status, {"Allow": ", ".join(exc.valid_methods)}
    return response


def _settings(exc: SettingsError):
    return render_template("setup.html", missing=[], problem=exc), 503


def _broker(exc: BrokerError):
    hint = getattr(exc, "hint", None) or None
    if isinstance(exc, CredentialNotFound):
        return page(404, str(exc), title="No such credential", hint=hint)
    if isinstance(exc, InvalidInput):
        return page(400, str(exc), hint=hint, errors=list(getattr(exc, "errors", {}).values()))
    if isinstance(exc, ConsentFailed):
        return page(400, str(exc), title="Consent failed", hint=hint)
    if isinstance(exc, TransientFailure):
        retry = getattr(exc, "retry_after", None)
        body, status = page(503, str(exc), hint=hint or "Wait a minute and try again.")
        return body, status, {"Retry-After": str(int(retry or 30))}
    if isinstance(exc, NeedsConsent):
        return page(409, str(exc), title="Consent needed", hint=hint)
    if isinstance(exc, Conflict):
        return page(409, str(exc), hint=hint or "Reload the page and try again.")
    if isinstance(exc, AppMisconfigured):
        return page(502, str(exc), title="The app registration was refused", hint=hint)
    current_app.logger.warning("broker error: %s", type(exc).__name__)
    return page(502, str(exc), title="The broker could not do that", hint=hint)


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
        return _http(exc)
    current_app.logger.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return page(500, "Something went wrong on our side. The error was logged; try again, and "
                     "if it keeps happening, contact whoever runs this site.",
                title="Something went wrong")
