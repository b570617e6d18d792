"""The consent round trip: send the admin to the authority, finish on `/consent/callback`.

The MSAL flow is sealed into the session, bound to the credential it was started for, and
popped on the first callback, so a replayed or foreign callback finds nothing to finish. The
refresh token goes from the authority straight into Key Vault inside `Broker.finish_consent`;
this module only ever sees the result's version and secret identifier.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from broker.credentials import latest_secret_id
from broker.errors import (
    AppMisconfigured,
    BrokerError,
    Conflict,
    ConsentFailed,
    CredentialNotFound,
    NeedsConsent,
    TransientFailure,
)
from consent_web import site
from consent_web.security import flow_seal

bp = Blueprint("consent", __name__, url_prefix="/consent")

CONSENT_FLOW = timedelta(minutes=15)
FLOW_KEY = "consent_flow"
RESULT_KEY = "consent_result"
MAX_PARAMS = 20
MAX_PARAM_LENGTH = 16_384


@dataclass(frozen=True)
class Failure:
    title: str
    explanation: str
    what_to_do: str
    status: int


ADMIN_REQUIREMENT = (
    "an account of the partner tenant with multi-factor authentication and the Global "
    "Administrator and Admin Agent roles"
)
FAILURES = {
    "cancelled": Failure(
        "Consent was cancelled",
        "The sign-in or the consent page was cancelled, so nothing was stored.",
        "Start the consent again when the administrator is ready.", 400),
    "wrong-tenant": Failure(
        "Signed in to the wrong organization",
        "The account that signed in belongs to a different tenant than the one this credential "
        "is registered for.",
        f"Sign in with {ADMIN_REQUIREMENT}, or edit the credential's tenant ID if it is wrong.",
        403),
    "no-mfa": Failure(
        "Multi-factor authentication is required",
        "The account that signed in has no multi-factor authentication method registered. "
        "Partner Center accepts only tokens obtained with MFA.",
        "Register an MFA method for the account (https://aka.ms/mfasetup), then start the "
        "consent again.", 403),
    "not-admin-agent": Failure(
        "The Admin Agent role is missing",
        "The account that signed in does not hold the Admin Agent role in Partner Center, so a "
        "token from it cannot manage customers.",
        "Ask a Global Administrator to assign the Admin Agent role (Partner Center, Account "
        f"settings, User management), or sign in with {ADMIN_REQUIREMENT}.", 403),
    "admin-consent-required": Failure(
        "An administrator must consent for the organization",
        "The app has not been granted consent in the partner tenant, and the account that "
        "signed in cannot grant it.",
        "Sign in with a Global Administrator and tick \"Consent on behalf of your "
        "organization\" before accepting.", 403),
    "state-mismatch": Failure(
        "This sign-in cannot be completed",
        "The answer from Microsoft does not belong to a consent started in this browser: it "
        "took longer than 15 minutes, was already used, or was started somewhere else.",
        "Start the consent again from the same browser.", 400),
    "code-rejected": Failure(
        "Microsoft rejected the sign-in code",
        "The authorization code could not be redeemed; it may have been used already or "
        "have expired.",
        "Start the consent again.", 400),
    "invite-invalid": Failure(
        "This consent link is not valid",
        "The link has expired, has already been used, or is not a link this site issued.",
        "Ask the person who sent it for a new link.", 404),
}
OTHER_FAILURES: dict[type[BrokerError], Failure] = {
    CredentialNotFound: Failure(
        "The credential no longer exists",
        "It was removed while the consent was in progress, so nothing was stored.",
        "Add the credential again if it is still needed.", 404),
    NeedsConsent: Failure(
        "Consent is still needed",
        "Microsoft did not issue a usable refresh token for this consent.",
        "Start the consent again.", 409),
    AppMisconfigured: Failure(
        "The app registration was refused",
        "Microsoft Entra ID refused the app's client ID or secret.",
        "Check the client ID and secret (and its expiry) on the credential, or the CPV app's "
        "settings, then start the consent again.", 502),
    TransientFailure: Failure(
        "Azure is not answering right now",
        "Key Vault or Microsoft Entra ID is busy or unreachable; nothing was stored.",
        "Wait a minute and start the consent again.", 503),
    Conflict: Failure(
        "Another change got there first",
        "The credential was being changed by someone or something else at the same moment.",
        "Open the credential, check its state, and start the consent again if needed.", 409),
}
# the token went to Key Vault and its answer was lost: it may well be stored, so never say
# "nothing was stored" (a second consent is harmless either way)
ANSWER_LOST = Failure(
    "Key Vault did not confirm the token was stored",
    "The token was sent to Key Vault, but the answer was lost on the way back and Key Vault "
    "could not be asked afterwards: the token may have been stored.",
    "Wait a minute, then open the credential: if it is Active with a new version from this "
    "consent, it worked; otherwise start the consent again.", 503)
GENERIC_FAILURE = Failure(
    "Consent could not be completed", "The broker could not store the token.",
    "Start the consent again; if it keeps failing, check the site's logs.", 502)


def redirect_uri() -> str:
    return site.get_settings().public_url.rstrip("/") + "/consent/callback"


def start(credential_id: str, *, prompt_consent: bool = False, invite_token: str | None = None):
    """Begin consent for a credential and send the browser to the authority's sign-in."""
    started = site.get_broker().begin_consent(
        credential_id, redirect_uri(), prompt_consent=prompt_consent, invite_token=invite_token,
    )
    session.pop(RESULT_KEY, None)
    session[FLOW_KEY] = {
        "credential_id": credential_id,
        "state": str(started.flow.get("state", "")),
        "flow": flow_seal().seal(dict(started.flow)),
        "invite": invite_token is not None,
    }
    return redirect(started.auth_url, 303)


@bp.get("/callback")
def callback():
    params = request.args.to_dict(flat=True)
    pending = session.pop(FLOW_KEY, None)
    if len(params) > MAX_PARAMS or any(len(v) > MAX_PARAM_LENGTH for v in params.values()):
        return failure_page(FAILURES["state-mismatch"], None, invite=False)
    if not isinstance(pending, dict):
        return failure_page(FAILURES["state-mismatch"], None, invite=False)
    credential_id = str(pending.get("credential_id", ""))
    invite = bool(pending.get("invite"))
    state = params.get("state", "")
    # compare bytes: compare_digest refuses non-ASCII str, and a query string may carry any
    expected = str(pending.get("state", "")).encode("utf-8", "surrogatepass")
    if not state or not hmac.compare_digest(state.encode("utf-8", "surrogatepass"), expected):
        return failure_page(FAILURES["state-mismatch"], credential_id, invite=invite)
    flow = flow_seal().open(pending.get("flow"), int(CONSENT_FLOW.total_seconds()))
    if flow is None or flow.get("broker_credential", credential_id) != credential_id:
        return failure_page(FAILURES["state-mismatch"], credential_id, invite=invite)
    try:
        result = site.get_broker().finish_consent(flow, params)
    except ConsentFailed as exc:
        failure = FAILURES.get(exc.reason, GENERIC_FAILURE)
        return failure_page(failure, credential_id, invite=invite, error=exc)
    except BrokerError as exc:
        failure = next((f for kind, f in OTHER_FAILURES.items() if isinstance(exc, kind)),
                       GENERIC_FAILURE)
        if getattr(exc, "maybe_stored", False):
            failure = ANSWER_LOST
        return failure_page(failure, credential_id, invite=invite, error=exc)
    current_app.logger.info("consent for %s stored as version %s", result.credential_id,
                            result.version)
    session[RESULT_KEY] = {
        "credential_id": result.credential_id,
        "version": result.version,
        "secret_id": result.secret_id,
        # consumers are given the unversioned URL: it always resolves to the newest token
        "secret_url": latest_secret_id(result.secret_id),
        "consented_by": result.consented_by,
        "roles": list(result.roles),
        "mfa": bool(result.mfa),
        "invite": invite,
    }
    return redirect(url_for(".done"), 303)


@bp.get("/done")
def done():
    result = session.get(RESULT_KEY)
    if not isinstance(result, dict):
        if g.get("operator"):
            return redirect(url_for("credentials.index"))
        return render_template("consent/nothing.html"), 404
    return render_template("consent/done.html", result=result)


def failure_page(failure: Failure, credential_id: str | None, *, invite: bool,
                 error: BrokerError | None = None):
    detail = None
    if error is not None:
        current_app.logger.warning("consent for %s failed: %s", credential_id or "?",
                                   type(error).__name__)
        detail = str(error)
        # an operator gets the hint too; a partner admin's page carries no CLI commands
        if g.get("operator") and getattr(error, "hint", None) and error.hint not in detail:
            detail = f"{detail} {error.hint}"
    page = render_template(
        "consent/failed.html", failure=failure, credential_id=credential_id, invite=invite,
        detail=detail,
    )
    return page, failure.status
