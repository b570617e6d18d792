"""Operator pages: the credentials list per environment, add, edit, detail and its actions."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    query = _list_query()
    # a few seconds of staleness spares the vault one request per 25 credentials per view;
    # this process's own writes show at once
    everything = site.get_broker().list_credentials(max_age=LIST_MAX_AGE)
    counts = {e: sum(1 for c in everything if c.environment == e) for e in ENVIRONMENTS}
    at, warn_days = now(), _warn_days()
    # one effective status per credential, so the filter, the badge and the counts agree
    statuses = [(c, c.status(at, warn_days)) for c in everything]
    attention_by_env = {e: sum(1 for c, status in statuses
                               if c.environment == e and status in ATTENTION)
                        for e in ENVIRONMENTS}
    tab = sorted(((c, status) for c, status in statuses if c.environment == query.environment),
                 key=lambda row: row[0].id)
    matching = [row for row in tab if query.matches(*row)]
    page = Page.of(matching, query.page, query.per_page)
    rows = [(c, status, c.reason(at, warn_days)) for c, status in page.rows]
    return render_template(
        "credentials/index.html", rows=rows, page=page, query=query,
        environment=query.environment, counts=counts, in_tab=len(tab),
        attention=attention_by_env[query.environment], attention_by_env=attention_by_env,
        statuses=STATUS_CHOICES, per_page_choices=PER_PAGE_CHOICES, now=at,
    )


PER_PAGE_CHOICES = (25, 50, 100)
DEFAULT_PER_PAGE = 50
MAX_QUERY = 200
MAX_PAGE_DIGITS = 9
# what needs a human: a consent nobody has given yet counts as much as one that was lost
ATTENTION = frozenset({Status.PENDING_CONSENT, Status.NEEDS_CONSENT, Status.ERROR,
                       Status.EXPIRING})
STATUS_CHOICES = (*(s.value for s in Status), "attention")
_PAGE_NUMBER = re.compile(rf"[0-9]{{1,{MAX_PAGE_DIGITS}}}")


@dataclass(frozen=True)
class ListQuery:
    """The list's GET parameters, checked: every link the page draws is built from this."""

    environment: str
    q: str = ""
    status: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def matches(self, credential, status: Status) -> bool:
        if self.status == "attention":
            if status not in ATTENTION:
                return False
        elif self.status and status != self.status:
            return False
        if not self.q:
            return True
        consented_by = credential.latest.consented_by if credential.latest else ""
        needle = self.q.casefold()
        return any(needle in (text or "").casefold() for text in (
            credential.id, credential.tenant_id, credential.product, credential.marketplace,
            consented_by))

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.status)

    def args(self, **changes) -> dict[str, object]:
        """URL parameters for this view with `changes`, leaving defaults out of the URL."""
        values = {"env": self.environment, "q": self.q, "status": self.status,
                  "per_page": self.per_page, "page": self.page, **changes}
        defaults = {"q": "", "status": "", "per_page": DEFAULT_PER_PAGE, "page": 1}
        return {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}


def _list_query() -> ListQuery:
    """The checked parameters, or a 400 saying which one is wrong and what it accepts; checked
    before the vault is asked anything, so a bad link costs nothing."""
    for name in ("env", "q", "status", "page", "per_page"):
        if len(request.args.getlist(name)) > 1:
            abort(400, description=f"Give the {name!r} parameter once.")
    environment = request.args.get("env") or ENVIRONMENTS[0]
    if environment not in ENVIRONMENTS:
        abort(400, description=f"Unknown environment; choose one of {', '.join(ENVIRONMENTS)}.")
    q = " ".join(request.args.get("q", "").split())
    if len(q) > MAX_QUERY or not q.isprintable():
        abort(400, description=f"Search for at most {MAX_QUERY} printable characters.")
    status = request.args.get("status", "")
    if status and status not in STATUS_CHOICES:
        abort(400, description=f"Unknown status; choose one of {', '.join(STATUS_CHOICES)}.")
    page = _number("page", "Page must be a whole number from 1.", default=1)
    if page < 1:
        abort(400, description="Page must be a whole number from 1.")
    choices = ", ".join(map(str, PER_PAGE_CHOICES))
    per_page = _number("per_page", f"Show {choices} per page.", default=DEFAULT_PER_PAGE)
    if per_page not in PER_PAGE_CHOICES:
        abort(400, description=f"Show {choices} per page.")
    return ListQuery(environment, q, status, page, per_page)


def _number(name: str, message: str, *, default: int) -> int:
    text = request.args.get(name, "")
    if not text:
        return default
    if not _PAGE_NUMBER.fullmatch(text):
        abort(400, description=message)
    return int(text)


def _warn_days() -> int:
    settings = site.state().settings
    return settings.warn_days if settings else 30


@dataclass(frozen=True)
class Page:
    """One page of rows and the numbers its summary and navigation show."""

    rows: list
    number: int
    per_page: int
    total: int

    @classmethod
    def of(cls, rows: list, number: int, per_page: int) -> Page:
        """A page past the last is a 400 like any other bad parameter (page 1 of nothing is
        the empty list, never an error)."""
        last = max(1, -(-len(rows) // per_page))
        if number > last:
            pages = f"{last} page{'s' if last != 1 else ''}"
            abort(400, description=f"There is no page {number}: this list has {pages} of "
                                   f"{per_page}.")
        start = (number - 1) * per_page
        return cls(rows[start:start + per_page], number, per_page, len(rows))

    @property
    def last(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_shown(self) -> int:
        return min(self.total, (self.number - 1) * self.per_page + 1)

    @property
    def last_shown(self) -> int:
        return min(self.total, self.number * self.per_page)

    def numbers(self, around: int = 2) -> list[int | None]:
        """Page numbers to link: the first, the last and `around` either side of this one;
        None where a run is left out."""
        wanted = {1, self.last, *range(self.number - around, self.number + around + 1)}
        shown = sorted(n for n in wanted if 1 <= n <= self.last)
        out: list[int | None] = []
        for n in shown:
            if out and n - out[-1] == 2:
                out.append(n - 1)  # a gap of one page is drawn, not elided
            elif out and n - out[-1] > 2:
                out.append(None)
            out.append(n)
        return out


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
            result = broker.edit(credential_id, spec)
        except InvalidInput as exc:
            loose += form.add_errors(exc.errors)
        else:
            if result.verified == "consent-needed":
                return _after_save(credential_id, "Saved. The tenant or app changed, so an "
                                   "administrator must consent again; the previous token "
                                   "versions were disabled, not deleted.")
            if result.verified == "verified":
                flash(f"Saved and checked: {result.message}", "success")
            elif result.verified in ("needs-consent", "unverified"):
                # one message, never a green "saved" beside a red problem
                flash(f"Saved, with a problem: {result.message}", "warning")
            else:
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
            # one message that says both what was saved and what failed
            _flash_error(f"{saved} But the sign-in could not be started", exc, "warning")
            return redirect(url_for(".detail", credential_id=credential_id), 303)
    flash(saved, "success")
    return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.get("/credentials/<slug:credential_id>")
def detail(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    # one page of the history (one vault request), however many versions there are
    versions, versions_next = broker.versions_page(
        credential_id, continuation=request.args.get("versions") or None)
    at = now()
    return render_template(
        "credentials/detail.html", credential=credential, versions=versions,
        versions_next=versions_next, now=at,
        why=credential.reason(at, _warn_days()),
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
            flash(f"Validation failed. {_outcome_text(credential_id, report.message)}", "error")
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
            flash("Rotated: the refresh token was redeemed and the new one is stored as the "
                  "current version.", "success")
        elif result.outcome == "skipped":
            flash(f"Not rotated this time: {result.message}", "info")
        elif result.outcome == "deferred":
            flash(f"Not rotated yet, Azure did not answer: {result.message}", "info")
        else:
            flash(f"Rotation failed. {_outcome_text(credential_id, result.message)}", "error")
    return redirect(url_for(".detail", credential_id=credential_id), 303)


@bp.route("/credentials/<slug:credential_id>/remove", methods=["GET", "POST"])
def remove(credential_id: str):
    broker = site.get_broker()
    credential = broker.get_credential(credential_id)
    if request.method == "POST":  # CSRFProtect has checked the token already
        broker.remove_credential(credential_id)
        flash(f"Credential {credential_id} was removed. Key Vault keeps it for its retention "
              "period (90 days by default): Removed credentials can recover it.", "success")
        return redirect(url_for(".index", env=credential.environment), 303)
    return render_template("credentials/remove.html", credential=credential)


@bp.get("/removed")
def removed():
    """Removed credentials still in the vault, with Recover (and Purge where allowed)."""
    return render_template("credentials/removed.html",
                           removed=site.get_broker().removed_credentials())


@bp.post("/removed/<slug:credential_id>/recover")
def recover(credential_id: str):
    broker = site.get_broker()
    broker.removed_credential(credential_id)  # a 404 page when there is nothing to recover
    credential = broker.recover_credential(credential_id)
    flash(f"Credential {credential.id} was recovered with all its versions.", "success")
    return redirect(url_for(".detail", credential_id=credential.id), 303)


@bp.route("/removed/<slug:credential_id>/purge", methods=["GET", "POST"])
def purge(credential_id: str):
    broker = site.get_broker()
    removed = broker.removed_credential(credential_id)
    if request.method == "POST":
        broker.purge_credential(credential_id)  # purge protection: a 400 saying so
        flash(f"Credential {credential_id} was purged for good; its id can be used again.",
              "success")
        return redirect(url_for(".removed"), 303)
    return render_template("credentials/purge.html", removed=removed)


def _outcome_text(credential_id: str, fallback: str) -> str:
    """After a failed rotation or validation: the reason now stored, in words, or the
    operation's own message when it stored none (a busy lease, an unreachable service)."""
    try:
        credential = site.get_broker().get_credential(credential_id)
    except BrokerError:
        return fallback
    reason = credential.reason(now(), _warn_days())
    if reason is None or reason.derived:
        return fallback
    return f"{reason.summary()}. What to do: {reason.action}"


def _flash_error(what: str, exc: BrokerError, category: str = "error") -> None:
    hint = getattr(exc, "hint", "") or ""
    message = str(exc)
    if hint and hint not in message:
        message = f"{message} {hint}"
    flash(f"{what}: {message}", category)
