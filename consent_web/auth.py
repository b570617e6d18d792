"""Operator sign-in: a one-time console link (`local`), MSAL against the operator tenant
(`entra`), or App Service Authentication (`easyauth`).

Anyone who can reach the sign-in page may ask for a new local link, so that request is rate
limited (LINK_RATE: a few a minute for the whole site, since every link lands on the same
console); a refused request gets 429 with Retry-After and changes nothing."""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from urllib.parse import quote

import msal
import requests
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from limits import parse_many, storage, strategies

from consent_web import site
from consent_web.operators import (
    Operator,
    allowed,
    app_service_auth_missing,
    local_sign_in,
    safe_next,
    sign_in,
    sign_out,
)
from consent_web.security import flow_seal

bp = Blueprint("auth", __name__, url_prefix="/auth")

SIGN_IN_FLOW = timedelta(minutes=15)
LINK_RATE = "3/minute;20/hour"  # new local sign-in links, for the whole site
FLOW_KEY = "operator_flow"
NEXT_KEY = "next"
ENTRA_SETTINGS = (
    ("BROKER_OPERATOR_TENANT_ID", "operator_tenant_id"),
    ("BROKER_OPERATOR_CLIENT_ID", "operator_client_id"),
    ("BROKER_OPERATOR_CLIENT_SECRET", "operator_client_secret"),
)


@bp.get("/login")
def login():
    settings = site.get_settings()
    target = safe_next(request.args.get("next"))
    if g.get("operator"):
        return redirect(target)
    if settings.operator_auth == "easyauth":
        if missing := app_service_auth_missing():
            return render_template("setup.html", missing=missing, problem=None,
                                   easyauth=True), 503
        return redirect("/.auth/login/aad?post_login_redirect_uri=" + quote(target, safe="/"))
    if settings.operator_auth == "entra" and (missing := _missing_entra_settings(settings)):
        return render_template("setup.html", missing=missing, problem=None), 503
    session[NEXT_KEY] = target
    return render_template("auth/login.html", mode=settings.operator_auth)


@bp.get("/local")
def local():
    """Exchange a printed one-time link for an operator session."""
    if site.get_settings().operator_auth != "local":
        abort(404)
    if not local_sign_in().redeem(request.args.get("token")):
        return render_template("auth/link_invalid.html"), 403
    target = safe_next(session.get(NEXT_KEY))
    sign_in(Operator("local operator", "local"))
    return redirect(target)  # drops the token from the address bar


@bp.post("/local/link")
def new_local_link():
    settings = site.get_settings()
    if settings.operator_auth != "local":
        abort(404)
    retry_after = _link_rate_limited()
    if retry_after is not None:
        flash("Too many sign-in links were asked for; wait a minute, then ask again.", "error")
        return (render_template("auth/login.html", mode=settings.operator_auth), 429,
                {"Retry-After": str(retry_after)})
    signer = local_sign_in()
    signer.announce(signer.link(settings.public_url))
    minutes = int(signer.lifetime // 60)
    flash(f"A new one-time sign-in link was printed on the console running the site; it works "
          f"for {minutes} minutes.", "info")
    return redirect(url_for(".login"), 303)


def _link_rate_limited() -> int | None:
    """None if another link may be printed now, else the seconds to wait (a moving window)."""
    limiter = current_app.extensions.get("link_limiter")
    if limiter is None:
        limiter = current_app.extensions["link_limiter"] = strategies.MovingWindowRateLimiter(
            storage.MemoryStorage())
    limits = parse_many(current_app.config.get("LOCAL_LINK_RATE", LINK_RATE))
    for limit in limits:
        if not limiter.test(limit, "local-link"):
            reset = limiter.get_window_stats(limit, "local-link").reset_time
            return max(1, int(reset - time.time()) + 1)
    for limit in limits:
        limiter.hit(limit, "local-link")
    return None


@bp.post("/login")
def start_entra():
    settings = site.get_settings()
    if settings.operator_auth != "entra":
        abort(404)
    if missing := _missing_entra_settings(settings):
        return render_template("setup.html", missing=missing, problem=None), 503
    try:
        # query mode (MSAL would prefer form_post): a cross-site POST back would arrive without
        # the SameSite=Lax session cookie that carries this flow
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = _operator_app(settings).initiate_auth_code_flow(
                scopes=[], redirect_uri=_callback_url(settings), prompt="select_account",
            )
    except (requests.RequestException, ValueError) as exc:
        current_app.logger.warning("operator sign-in could not start: %s", type(exc).__name__)
        abort(503, description="The sign-in service could not be reached. Try again shortly.")
    session[FLOW_KEY] = flow_seal().seal(flow)
    return redirect(flow["auth_uri"], 303)


@bp.get("/callback")
def entra_callback():
    settings = site.get_settings()
    if settings.operator_auth != "entra":
        abort(404)
    flow = flow_seal().open(session.pop(FLOW_KEY, None), int(SIGN_IN_FLOW.total_seconds()))
    state = request.args.get("state")
    if flow is None or not state or state != flow.get("state"):
        abort(400, description="This sign-in did not start in this browser, or took longer than "
                               "15 minutes. Sign in again.")
    if request.args.get("error"):
        abort(403, description="Sign-in was cancelled or refused by Microsoft Entra ID.")
    try:
        result = _operator_app(settings).acquire_token_by_auth_code_flow(
            flow, request.args.to_dict(flat=True), scopes=[],
        )
    except (requests.RequestException, ValueError) as exc:
        current_app.logger.warning("operator sign-in failed: %s", type(exc).__name__)
        abort(400, description="Sign-in could not be completed. Sign in again.")
    if "error" in result:
        current_app.logger.warning("operator sign-in refused: %s", result.get("error"))
        abort(403, description="Microsoft Entra ID refused the sign-in. Sign in again.")
    claims = result.get("id_token_claims") or {}
    name = str(claims.get("preferred_username") or claims.get("upn") or claims.get("oid") or "")
    if not allowed(claims.get("groups") or [], claims.get("roles") or [], settings):
        hint = (" Your account is in too many groups for the token to list them; ask for the "
                "operator app role instead." if "_claim_names" in claims else "")
        abort(403, description=f"{name or 'This account'} is not in the operators' group or "
                               f"role, so it cannot use this site.{hint}")
    target = safe_next(session.get(NEXT_KEY))
    sign_in(Operator(name or "operator", "entra"))
    return redirect(target)


@bp.post("/logout")
def logout():
    settings = site.get_settings()
    sign_out()
    if settings.operator_auth == "easyauth":
        return redirect("/.auth/logout?post_logout_redirect_uri=/", 303)
    return render_template("auth/signed_out.html", mode=settings.operator_auth)


def _missing_entra_settings(settings) -> list[str]:
    missing = [env for env, attr in ENTRA_SETTINGS if not getattr(settings, attr, None)]
    if not (settings.operator_group_id or settings.operator_role):
        missing.append("BROKER_OPERATOR_GROUP_ID or BROKER_OPERATOR_ROLE")
    return missing


def _callback_url(settings) -> str:
    return settings.public_url.rstrip("/") + url_for(".entra_callback")


def _operator_app(settings) -> msal.ConfidentialClientApplication:
    """A throwaway MSAL app: the site keeps no operator tokens, only who signed in."""
    return msal.ConfidentialClientApplication(
        settings.operator_client_id,
        client_credential=settings.operator_client_secret,
        authority=f"{settings.authority_host.rstrip('/')}/{settings.operator_tenant_id}",
        instance_discovery=None if settings.authority_is_microsoft else False,
        token_cache=msal.TokenCache(),
    )
