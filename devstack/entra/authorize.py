"""`/{tenant}/oauth2/v2.0/authorize` and the sign-in, MFA and consent pages behind it.

Each step shows the next page the request needs (sign-in, account picker, MFA, consent) or
answers the client at its redirect URI with `code`/`state`/`session_state`/`client_info`, or
with `error`/`error_description`/`error_uri`/`state`, in the response mode it asked for.
"""

from __future__ import annotations

import hmac
import secrets
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Flask, g, make_response, redirect, render_template, request

from .auth_request import AuthRequest, PageError, parse_request
from .core import Entra, client_info_for, not_admin_agent
from .directory import App
from .errors import CATALOG, EntraError, malformed
from .sessions import Pending

MAX_QUERY = 16 * 1024
OTP_DIGITS = 6
MAX_OTP_FAILURES = 5


def register(app: Flask, entra: Entra):
    """Add the authorize endpoint and its pages; returns the error-page renderer."""
    cookie = "ESTSAUTH"

    def session_cookie_name() -> str:
        port = urlsplit(entra.authority).port or 0
        return f"{cookie}_{port}"

    @app.after_request
    def set_session_cookie(response):
        sid = g.get("set_sid")
        if sid:
            response.set_cookie(session_cookie_name(), sid, secure=True, httponly=True,
                                samesite="Lax", path="/")
        return response

    def browser_session():
        session = entra.sessions.get(request.cookies.get(session_cookie_name()))
        if session is None:
            session = entra.sessions.new()
            g.set_sid = session.sid
        return session

    @app.errorhandler(PageError)
    def page_error(exc: PageError):
        return error_page(exc.error, exc.app)

    def error_page(error: EntraError, client: App | None = None, status: int = 400):
        now = entra.now()
        html = render_template(
            "entra/error.html", error=error, app=client, timestamp=error.timestamp(now),
            description=error.description(now), error_uri=error.error_uri(entra.authority))
        return html, status

    @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str):
        if len(request.query_string) > MAX_QUERY:
            raise PageError(EntraError(90015, "invalid_request", "The query string is too long."))
        params = request.args if request.method == "GET" else request.form
        auth = parse_request(entra, tenant, params)
        if isinstance(auth, tuple):  # (redirect target, error)
            return respond(*auth)
        pending = Pending(secrets.token_urlsafe(32), browser_session().sid, auth)
        session = entra.sessions.get(pending.sid)
        pending.force_login = bool(
            "login" in auth.prompts
            or (auth.login_hint and session and session.user
                and session.user.upn != auth.login_hint.lower())
            or (auth.max_age is not None and session and session.user
                and time.time() - session.auth_time_real > auth.max_age))
        pending.choose_account = "select_account" in auth.prompts
        entra.sessions.add_pending(pending)
        return advance(pending)

    def advance(p: Pending):
        """Show the next page this request needs, or answer the client."""
        auth: AuthRequest = p.request
        session = entra.sessions.get(p.sid)
        if (session and session.user and auth.path.tenant
                and session.user.tenant_id != auth.path.tenant.id):
            p.force_login = True  # the signed-in account is not in this tenant
        if p.user is None and session and session.user and not p.force_login:
            if p.choose_account and "none" not in auth.prompts:
                return page(p, "entra/select_account.html", account=session.user)
            p.user, p.mfa = session.user, session.mfa
            p.auth_time, p.auth_time_real = session.auth_time, session.auth_time_real
        if p.user is None:
            if "none" in auth.prompts:
                return fail(p, EntraError(50058, "login_required",
                                          "A silent sign-in request was sent but no user is "
                                          "signed in."))
            return page(p, "entra/login.html", username=auth.login_hint or "")
        user = p.user
        needs_mfa = auth.require_mfa or any(entra.mfa_required(user.tenant_id, r.resource)
                                            for r in auth.scopes.resources)
        if needs_mfa and not p.mfa and not user.mfa_registered:
            # Conditional Access stops a user with no MFA method at sign-in (the registration
            # interrupt), not later at the token endpoint
            error = EntraError(
                50079, "interaction_required",
                "Due to a configuration change made by your administrator, or because you "
                "moved to a new location, you must enroll in multi-factor authentication to "
                f"access '{mfa_protected(auth)}'.")
            if "none" in auth.prompts:
                return fail(p, error)
            entra.sessions.finish(p.ctx_id)
            html = render_template("entra/proofup.html", user=user, app=auth.app,
                                   error=error, timestamp=error.timestamp(entra.now()),
                                   description=error.description(entra.now()))
            return html, 200
        if needs_mfa and not p.mfa:
            if "none" in auth.prompts:
                return fail(p, mfa_required(auth))
            if not p.otp:
                p.otp = f"{secrets.randbelow(10 ** OTP_DIGITS):0{OTP_DIGITS}d}"
            return page(p, "entra/mfa.html", protected=mfa_protected(auth))
        for wanted in auth.scopes.resources:
            if wanted.resource.requires_admin_agent and not entra.directory.is_admin_agent(user):
                return fail(p, EntraError(50105, "access_denied",
                                          not_admin_agent(user, wanted.resource)))
        tenant_id = user.tenant_id
        missing_consent = auth.wanted() - entra.granted(tenant_id, auth.app, user)
        forced = bool({"consent", "admin_consent"} & auth.prompts)
        if (missing_consent or forced) and not p.consented:
            if "none" in auth.prompts:
                return fail(p, EntraError(
                    65001, "consent_required",
                    "The user or administrator has not consented to use the application with "
                    f"ID '{auth.app.app_id}' named '{auth.app.name}'. Send an interactive "
                    "authorization request for this user and resource."))
            return consent_page(p)
        return succeed(p)

    def mfa_required(auth: AuthRequest) -> EntraError:
        resource = next((r.resource for r in auth.scopes.resources if r.resource.requires_mfa),
                        None)
        target = resource.app_id if resource else auth.app.app_id
        return EntraError(50076, "interaction_required",
                          "Due to a configuration change made by your administrator, or because "
                          "you moved to a new location, you must use multi-factor "
                          f"authentication to access '{target}'.")

    def succeed(p: Pending):
        auth: AuthRequest = p.request
        user = p.user
        session = entra.sessions.get(p.sid)
        payload = {
            "client_id": auth.app.app_id,
            "redirect_uri": auth.redirect_uri,
            "tenant_id": user.tenant_id,
            "user_oid": user.object_id,
            "scopes": sorted(f"{r} {p_}" for r, p_ in auth.wanted()),
            # the order the client asked for them: a code redeemed without `scope` is for
            # the first
            "resource_order": [r.resource.uri for r in auth.scopes.resources],
            "by_app_id": [r.resource.uri for r in auth.scopes.resources if r.by_app_id],
            "code_challenge_method": auth.code_challenge_method,
            "default_resources": sorted(r.resource.uri for r in auth.scopes.resources
                                        if r.default),
            "oidc": sorted(auth.scopes.oidc),
            "nonce": auth.nonce,
            "code_challenge": auth.code_challenge,
            "mfa": p.mfa,
            "auth_time": p.auth_time,
            "auth_time_real": p.auth_time_real,
        }
        params = {"code": entra.new_code(payload)}
        if auth.state is not None:
            params["state"] = auth.state
        if auth.client_info:
            params["client_info"] = client_info_for(user)
        params["session_state"] = session.session_state if session else ""
        entra.sessions.finish(p.ctx_id)
        return respond(auth, params)

    def fail(p: Pending, error: EntraError):
        entra.sessions.finish(p.ctx_id)
        return respond(p.request, error.as_params(entra.now(), entra.authority)
                       | ({"state": p.request.state} if p.request.state is not None else {}))

    def respond(auth: AuthRequest | tuple, params: dict[str, str]):
        if isinstance(auth, AuthRequest):
            uri, mode = auth.redirect_uri, auth.response_mode
        else:
            uri, mode = auth
        parts = urlsplit(uri)
        path = parts.path or "/"
        g.form_action = f"{parts.scheme}://{parts.netloc}"
        if mode == "form_post":
            html = render_template("entra/form_post.html", action=uri, params=params)
            return make_response(html, 200)
        if mode == "fragment":
            target = urlunsplit((parts.scheme, parts.netloc, path, parts.query,
                                 urlencode(params)))
        else:
            query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
            target = urlunsplit((parts.scheme, parts.netloc, path, query, ""))
        response = redirect(target, 302)
        response.headers["Cache-Control"] = "no-store"
        return response

    def page(p: Pending, template: str, status: int = 200, **extra):
        auth: AuthRequest = p.request
        p.flow_token, p.stage = secrets.token_urlsafe(24), template
        g.form_action = _origin(auth.redirect_uri)
        html = render_template(
            template, p=p, auth=auth, app=auth.app, tenant=auth.path, ctx_id=p.ctx_id,
            flow_token=p.flow_token, domain_hint=auth.domain_hint, **extra)
        return html, status

    def consent_page(p: Pending):
        auth: AuthRequest = p.request
        publisher = entra.directory.tenants[auth.app.tenant_id]
        groups = [(r.resource, [r.resource.delegated[n] for n in sorted(r.permissions)])
                  for r in auth.scopes.resources]
        return page(p, "entra/consent.html", publisher=publisher, groups=groups, user=p.user)

    def pending_from_form(stage: str) -> Pending:
        """The request this form belongs to: same browser, the page it showed last."""
        ctx_id = request.form.get("ctx", "")
        p = entra.sessions.pending(ctx_id) if ctx_id else None
        sid = request.cookies.get(session_cookie_name(), "")
        if (p is None or p.stage != f"entra/{stage}.html" or not hmac.compare_digest(p.sid, sid)
                or not hmac.compare_digest(p.flow_token,
                                           request.form.get("flowToken", ""))):
            raise PageError(EntraError(
                50089, "invalid_request",
                "Authentication failed due to flow token expired. Go back to the application "
                "and sign in again."))
        return p

    @app.post("/<tenant>/login")
    def login(tenant: str):
        del tenant
        p = pending_from_form("login")
        auth: AuthRequest = p.request
        username = request.form.get("username", "").strip()[:256]
        password = request.form.get("password", "")[:256]
        user = entra.directory.user(username) if username else None
        if user is None or (auth.path.tenant and user.tenant_id != auth.path.tenant.id):
            message = ("We couldn't find an account with that username. Try another, or get a "
                       "new account." if user is None else
                       f"This account doesn't exist in the '{auth.path.display}' directory. "
                       "To sign in to this application, the account must be added to the "
                       "directory.")
            return page(p, "entra/login.html", status=200, username=username, error=message)
        if not hmac.compare_digest(user.password.encode(), password.encode("utf-8", "replace")):
            return page(p, "entra/login.html", username=username,
                        error="Your account or password is incorrect. If you don't remember "
                              "your password, reset it now.")
        # a fresh session id on every sign-in (no session fixation)
        old = entra.sessions.get(p.sid)
        session = entra.sessions.new()
        if old:
            entra.sessions.drop(old.sid)
        session.user, session.mfa = user, False
        session.auth_time, session.auth_time_real = entra.now(), time.time()
        g.set_sid = session.sid
        p.sid, p.user, p.mfa = session.sid, user, False
        p.auth_time, p.auth_time_real = session.auth_time, session.auth_time_real
        p.force_login = p.choose_account = False
        return advance(p)

    @app.post("/<tenant>/select_account")
    def select_account(tenant: str):
        del tenant
        p = pending_from_form("select_account")
        session = entra.sessions.get(p.sid)
        choice = request.form.get("account", "")
        p.choose_account = False
        if not (session and session.user and choice == session.user.upn):
            p.force_login = True
        return advance(p)

    @app.post("/<tenant>/SAS/ProcessAuth")
    def process_auth(tenant: str):
        del tenant
        p = pending_from_form("mfa")
        code = request.form.get("otp", "").strip()[:32]
        if not (p.otp and hmac.compare_digest(p.otp, code)):
            p.otp_failures += 1
            if p.otp_failures >= MAX_OTP_FAILURES:
                return fail(p, EntraError(50074, "access_denied",
                                          "Strong Authentication is required and the user did "
                                          "not pass the MFA challenge."))
            return page(p, "entra/mfa.html", protected=mfa_protected(p.request),
                        error="You didn't enter the expected verification code. Please try "
                              "again.")
        p.mfa, p.otp = True, ""
        session = entra.sessions.get(p.sid)
        if session and session.user == p.user:
            session.mfa = True
        return advance(p)

    @app.post("/<tenant>/Consent/Set")
    def consent(tenant: str):
        del tenant
        p = pending_from_form("consent")
        auth: AuthRequest = p.request
        if "accept" not in request.form:
            return fail(p, EntraError(65004, "access_denied",
                                      "User declined to consent to access the app."))
        user = p.user
        if user is None:
            raise PageError(malformed("No user is signed in."), auth.app)
        on_behalf = request.form.get("consent_on_behalf") in ("on", "true", "1")
        admin_only = any(r.resource.delegated[n].admin_only
                         for r in auth.scopes.resources for n in r.permissions)
        if (on_behalf or admin_only) and not user.is_admin:
            return fail(p, EntraError(
                90094, "access_denied",
                f"Admin consent is required. {auth.app.name} needs permission to access "
                "resources in your organization that only an admin can grant. Please ask an "
                "admin to grant permission to this app before you can use it."))
        entra.grant(user.tenant_id, auth.app, user, auth.wanted(), tenant_wide=on_behalf)
        p.consented = True
        return advance(p)

    @app.get("/<tenant>/oauth2/logout")  # the v1.0 document's end_session_endpoint
    @app.get("/<tenant>/oauth2/v2.0/logout")
    def logout(tenant: str):
        del tenant
        sid = request.cookies.get(session_cookie_name())
        if sid:
            entra.sessions.drop(sid)
        target = request.args.get("post_logout_redirect_uri", "")
        client = entra.directory.app(request.args.get("client_id", "")[:64])
        response = make_response(render_template("entra/signed_out.html"))
        if target and any(a.matches_redirect(target)
                          for a in ([client] if client else entra.directory.apps.values())):
            response = redirect(target, 302)
        response.delete_cookie(session_cookie_name(), path="/")
        return response

    @app.get("/error")
    def error_lookup():
        raw = request.args.get("code", "")
        code = int(raw) if raw.isdigit() and len(raw) < 10 else None
        return render_template("entra/lookup.html", code=code, text=CATALOG.get(code or -1))

    return error_page


def mfa_protected(auth: AuthRequest) -> str:
    names = [r.resource.name for r in auth.scopes.resources if r.resource.requires_mfa]
    return ", ".join(names) or auth.app.name


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"
