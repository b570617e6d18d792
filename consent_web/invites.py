"""Consent by invitation: an operator makes a signed, single-use link for an admin elsewhere;
the public landing page tells that admin what they are agreeing to and starts the flow."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, g, render_template, request

from broker.errors import ConsentFailed
from broker.notify import Event
from consent_web import consent, site
from consent_web.consent import FAILURES

bp = Blueprint("invites", __name__)

MAX_TOKEN_LENGTH = 4096


@bp.route("/credentials/<slug:credential_id>/invite", methods=["GET", "POST"])
def create(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    notifier = broker.notifier
    can_email = bool(notifier is not None and getattr(notifier, "enabled", False))
    invite, emailed = None, False
    if request.method == "POST":  # CSRFProtect has checked the token already
        invite = broker.create_invite(credential_id)
        if request.form.get("send") == "email" and can_email:
            notifier.notify(_invite_event(credential, invite))
            emailed = True
    # the link is shown in this response only: never in a redirect URL or a flashed cookie
    return render_template("invites/create.html", credential=credential, invite=invite,
                           emailed=emailed, can_email=can_email)


def _invite_event(credential, invite) -> Event:
    who = g.operator.name if g.get("operator") else "An operator"
    return Event(
        kind="needs-consent",
        credential_id=credential.id,
        message=(f"{who} asks an administrator of partner tenant {credential.tenant_id} to "
                 f"consent for {credential.product} ({credential.marketplace}, "
                 f"{credential.environment})."),
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
        requester=urlsplit(settings.public_url).hostname or settings.public_url,
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
