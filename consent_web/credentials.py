"""Operator pages: the credentials list per environment, add, edit, detail and its actions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from broker.credentials import ENVIRONMENTS, CredentialSpec, Status
from broker.errors import BrokerError, CredentialNotFound, InvalidInput, SettingsError
from consent_web import consent, site
from consent_web.forms import AddCredentialForm, EditCredentialForm

bp = Blueprint("credentials", __name__)


LIST_MAX_AGE = 3.0  # seconds


def now() -> datetime:
    return datetime.now(UTC)


@bp.get("/")
def index():
    environment = request.args.get("env", ENVIRONMENTS[0])
    if environment not in ENVIRONMENTS:
        abort(400, description=f"Unknown environment; choose one of {', '.join(ENVIRONMENTS)}.")
    # a few seconds of staleness spares the vault one request per 25 credentials per view;
    # this process's own writes show at once
    everything = site.get_broker().list_credentials(max_age=LIST_MAX_AGE)
    counts = {e: sum(1 for c in everything if c.environment == e) for e in ENVIRONMENTS}
    shown = sorted((c for c in everything if c.environment == environment), key=lambda c: c.id)
    return render_template(
        "credentials/index.html", credentials=shown, environment=environment, counts=counts,
        now=now(),
    )


@bp.route("/add", methods=["GET", "POST"])
def add():
    form = AddCredentialForm()
    if request.method == "GET" and request.args.get("env") in ENVIRONMENTS:
        form.environment.data = request.args["env"]
    if request.method == "GET":
        return render_template("credentials/form.html", form=form, editing=None, loose=[])
    loose: list[str] = []
    spec = _checked_spec(form, form.id.data or "", loose)
    if spec is not None:
        try:
            credential = site.get_broker().add_credential(spec)
        except InvalidInput as exc:
            loose += form.add_errors(exc.errors)
        else:
            return _after_save(credential.id, f"Credential {credential.id} saved; it is "
                                              "waiting for consent.")
    return render_template("credentials/form.html", form=form, editing=None, loose=loose), 400


@bp.route("/credentials/<slug:credential_id>/edit", methods=["GET", "POST"])
def edit(credential_id: str):
    broker = site.get_broker()
    existing = broker.get_credential(credential_id)
    form = EditCredentialForm()
    if request.method == "GET":
        _fill(form, existing)
        return render_template("credentials/form.html", form=form, editing=existing, loose=[])
    loose: list[str] = []
    spec = _checked_spec(form, credential_id, loose, existing=existing)
    if spec is not None:
        try:
            credential = broker.edit_credential(credential_id, spec)
        except InvalidInput as exc:
            loose += form.add_errors(exc.errors)
        else:
            if credential.stored_status == Status.PENDING_CONSENT:
                return _after_save(credential_id, "Saved. The tenant or app changed, so an "
                                   "administrator must consent again; the previous token "
                                   "versions were disabled.")
            flash("Saved. The stored refresh token stays in use.", "success")
            return redirect(url_for(".detail", credential_id=credential_id), 303)
    page = render_template("credentials/form.html", form=form, editing=existing, loose=loose)
    return page, 400


def _checked_spec(form, credential_id: str, loose: list[str], *, existing=None):
    """The spec if the form is valid; otherwise None, with every field's problem on the form
    (the form's own checks and the broker's rules run together, so one round trip shows all)."""
    form_ok = form.validate()
    try:
        spec = CredentialSpec.from_mapping(form.spec_data(credential_id)).validated(
            now=now(), existing=existing)
    except InvalidInput as exc:
        loose += form.add_errors(exc.errors)
        return None
    return spec if form_ok else None


def _fill(form: EditCredentialForm, credential) -> None:
    form.environment.data = credential.environment
    form.product.data = credential.product
    form.marketplace.data = credential.marketplace
    form.tenant_id.data = credential.tenant_id
    form.client_id.data = credential.client_id or ""
    expires = credential.secret_expires_on
    form.secret_expires_on.data = expires.date() if expires else None


def _after_save(credential_id: str, saved: str):
    """"Save and sign in" goes on to the authority; "Save" (or a failed start) to the detail."""
    if request.form.get("next_step") == "consent":
        try:
            return consent.start(credential_id)
        except SettingsError:
            raise
        except BrokerError as exc:
            _flash_error("The sign-in could not be started", exc)
    flash(saved, "success")
    return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.get("/credentials/<slug:credential_id>")
def detail(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    versions = broker.versions(credential_id)
    return render_template(
        "credentials/detail.html", credential=credential, versions=versions, now=now(),
    )


@bp.post("/credentials/<slug:credential_id>/consent")
def start_consent(credential_id: str):
    return _consent(credential_id, prompt_consent=False)


@bp.post("/credentials/<slug:credential_id>/generate-token")
def generate_token(credential_id: str):
    """Re-consent with prompt=consent, e.g. after the app's permissions changed."""
    return _consent(credential_id, prompt_consent=True)


def _consent(credential_id: str, *, prompt_consent: bool):
    site.get_broker().get_credential(credential_id)  # 404 before anything else
    try:
        return consent.start(credential_id, prompt_consent=prompt_consent)
    except (SettingsError, CredentialNotFound):
        raise
    except BrokerError as exc:
        _flash_error("The sign-in could not be started", exc)
        return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.post("/credentials/<slug:credential_id>/validate")
def validate(credential_id: str):
    broker = site.get_broker()
    broker.get_credential(credential_id)
    try:
        report = broker.validate(credential_id)
    except (SettingsError, CredentialNotFound):
        raise
    except BrokerError as exc:
        _flash_error("Validation failed", exc)
    else:
        if report.ok:
            answered = f" as {report.organization}" if report.organization else ""
            flash(f"Validation passed: the refresh token works"
                  f"{' with MFA' if report.mfa else ''} and Partner Center answered{answered}.",
                  "success")
        else:
            flash(f"Validation failed: {report.message}", "error")
    return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.post("/credentials/<slug:credential_id>/rotate")
def rotate(credential_id: str):
    broker = site.get_broker()
    broker.get_credential(credential_id)
    try:
        result = broker.rotate(credential_id, wait=5.0)
    except (SettingsError, CredentialNotFound):
        raise
    except BrokerError as exc:
        _flash_error("Rotation failed", exc)
    else:
        if result.outcome == "rotated":
            flash(f"Rotated: the refresh token was redeemed and the new one stored as version "
                  f"{result.version}.", "success")
        elif result.outcome in ("skipped", "deferred"):
            flash(f"Not rotated ({result.outcome}): {result.message}", "info")
        else:
            flash(f"Rotation {result.outcome}: {result.message}", "error")
    return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.route("/credentials/<slug:credential_id>/remove", methods=["GET", "POST"])
def remove(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    if request.method == "POST":  # CSRFProtect has checked the token already
        broker.remove_credential(credential_id)
        flash(f"Credential {credential_id} removed. Its Key Vault secrets are soft-deleted and "
              "can be recovered for 90 days.", "success")
        return redirect(url_for(".index", env=credential.environment), 303)
    return render_template("credentials/remove.html", credential=credential)


def _flash_error(what: str, exc: BrokerError) -> None:
    hint = getattr(exc, "hint", "") or ""
    message = str(exc)
    if hint and hint not in message:
        message = f"{message} {hint}"
    flash(f"{what}: {message}", "error")
