"""Consent by invitation: an operator makes a signed, single-use link for an admin elsewhere;
the public landing page tells that admin what they are agreeing to and starts the flow."""

from __future__ import annotations

import re

from flask import Blueprint, render_template, request

from broker.errors import ConsentFailed
from broker.notify import Event
from consent_web import consent, site
from consent_web.branding import display_name
from consent_web.consent import FAILURES

bp = Blueprint("invites", __name__)

MAX_TOKEN_LENGTH = 4096


EMAIL = re.compile(r"^[^@\s<>,;]{1,64}@[a-z0-9-]+(\.[a-z0-9-]+)+$", re.IGNORECASE)


@bp.route("/credentials/<slug:credential_id>/invite", methods=["GET", "POST"])
def create(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    can_email = broker.email_enabled
    invite, emailed_to, error, address = None, None, None, ""
    if request.method == "POST":  # CSRFProtect has checked the token already
        address = (request.form.get("email") or "").strip()
        if request.form.get("send") == "email":
            if not can_email:
                error = "Email needs BROKER_SMTP_URL (the mail server); nothing was sent."
            elif not EMAIL.fullmatch(address) or len(address) > 254:
                error = "Enter the partner admin's email address, such as admin@contoso.com."
        if error is None:
            invite = broker.create_invite(credential_id)
            if request.form.get("send") == "email":
                if broker.email(_invite_event(credential, invite), to=[address]):
                    emailed_to = address
                else:
                    error = (f"The link was created, but the email to {address} could not be "
                             "sent (see the site's log); copy the link and send it yourself.")
    current = None if invite else broker.current_invite(credential)
    # the link is shown in this response only: never in a redirect URL or a flashed cookie
    page = render_template("invites/create.html", credential=credential, invite=invite,
                           current=current, emailed_to=emailed_to, can_email=can_email,
                           error=error, address=address)
    return page, (400 if error and invite is None else 200)


def _invite_event(credential, invite) -> Event:
    requester = display_name(site.state().settings)
    return Event(
        kind="consent-invite",
        credential_id=credential.id,
        message=(f"{requester} asks an administrator of partner tenant {credential.tenant_id} "
                 f"to consent to Partner Center access for {credential.product} "
                 f"({credential.marketplace}, {credential.environment})."),
        action=("Open the consent link and sign in with an account that has multi-factor "
                "authentication and the Global Administrator and Admin Agent roles. The link "
                f"works once and expires {invite.expires_at:%Y-%m-%d %H:%M} UTC."),
        invite_url=invite.url,
    )


@bp.get("/invite/<token>")
def landing(token: str):
    try:
        credential = _open(token)
    except ConsentFailed as exc:
        return _invalid(exc)
    settings = site.get_settings()
    return render_template(
        "invites/landing.html", credential=credential, token=token,
        requester=display_name(settings),
        app_id=credential.client_id or settings.cpv_client_id,
        cpv=credential.client_id is None,
    )


@bp.post("/invite/<token>")
def start(token: str):
    try:
        credential = _open(token)
        return consent.start(credential.id, invite_token=token)
    except ConsentFailed as exc:
        return _invalid(exc)


def _open(token: str):
    if len(token) > MAX_TOKEN_LENGTH:
        raise ConsentFailed("invite-invalid", "This consent link is too long to be genuine.")
    return site.get_broker().open_invite(token)


def _invalid(error: ConsentFailed):
    return consent.failure_page(FAILURES["invite-invalid"], None, invite=True, error=error)
