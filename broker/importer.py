"""`broker import`: bring refresh tokens kept elsewhere (old configuration, spreadsheets) into the
vault, proving each one works before anything is stored.

The whole file is read and checked first: a malformed file (bad syntax, unknown or missing
columns, a duplicated id, too big) is an InvalidInput naming the line, and nothing is written.
Then each row on its own: its fields are validated, its token is redeemed with Entra (which
also renews it), and only the fresh token is stored, with `source=import`. A credential that
already has a working token is skipped, so running the same file again changes nothing.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import json.scanner
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.consent import role_names
from broker.credentials import (
    PLACEHOLDER_VALUE,
    Credential,
    CredentialSpec,
    Source,
    Status,
    is_credential_id,
    secret_expiry_instant,
)
from broker.errors import BrokerError, Conflict, CredentialNotFound, InvalidInput
from broker.identity import Identity, Redemption
from broker.logs import bound, get_logger, redact

log = get_logger(__name__)

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 5000
SPEC_FIELDS = ("id", "environment", "product", "marketplace", "tenant_id", "client_id",
               "client_secret", "secret_expires_on")
FIELDS = (*SPEC_FIELDS, "refresh_token")
REQUIRED = ("id", "refresh_token")
LEASE_WAIT = 30.0
_WORKING = (Status.ACTIVE, Status.EXPIRING)


@dataclass(frozen=True)
class Row:
    """One credential of the file: its line (for messages) and its cells."""

    line: int
    values: dict[str, str] = field(repr=False)

    @property
    def id(self) -> str:
        return self.values.get("id", "").strip().lower()


@dataclass
class ImportReport:
    """What happened to each credential of the file; never holds a token or a secret."""

    imported: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # id -> a warning about an imported one

    @property
    def ok(self) -> bool:
        return not self.failed

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """(id, result, why) rows in file order of results: imported, skipped, failed."""
        for cid in self.imported:
            yield cid, "imported", self.notes.get(cid, "")
        for cid, why in self.skipped:
            yield cid, "skipped", why
        for cid, why in self.failed:
            yield cid, "failed", why


class Importer:
    """Imports files of tokens into the vault, wired by `Broker` like the rotator: it gets the
    collaborators it uses, plus `retrying` (the rotator's retry of transient Entra failures) and
    `register` (the facade's registration of a new credential, placeholder and all)."""

    def __init__(self, settings, vault, leases, identity: Identity, *,
                 retrying: Callable[[Callable[[], Redemption]], Redemption],
                 register: Callable[[CredentialSpec], Credential]) -> None:
        self.settings = settings
        self.vault = vault
        self.leases = leases
        self.identity = identity
        self.retrying = retrying
        self.register = register

    def import_file(self, path: Path) -> ImportReport:
        """Read, check, then import every row of `path`; the module docstring has the rules."""
        rows = read_rows(Path(path))
        report = ImportReport()
        for row in rows:
            with bound(credential=row.id or None):
                outcome, why = _import_row(self, row)
            if outcome == "imported":
                report.imported.append(row.id)
                if why:
                    report.notes[row.id] = why
            elif outcome == "skipped":
                report.skipped.append((row.id, why))
            else:
                report.failed.append((row.id, why))
        log.info("import of %s: %d imported, %d skipped, %d failed", Path(path).name,
                 len(report.imported), len(report.skipped), len(report.failed))
        return report


# -- reading the file -------------------------------------------------------------------------


def read_rows(path: Path) -> list[Row]:
    """Every row of a CSV or JSON file, checked for shape; InvalidInput names the line."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _unreadable(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_BYTES:
        raise _unreadable(f"{path.name} is {size} bytes; the limit is {MAX_BYTES} (split the "
                          "file)")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise _unreadable(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise _malformed(data[:exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    rows = parse_json(text) if _looks_like_json(path, text) else parse_csv(text)
    _check_rows(rows)
    for row in rows:  # mask them in any log line from here on
        redact.register(row.values.get("refresh_token"))
        redact.register(row.values.get("client_secret"))
    return rows


def _looks_like_json(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip()[:1] in ("[", "{")


def _unreadable(message: str) -> InvalidInput:
    return InvalidInput(message, errors={"file": message},
                        hint="Fix the file and import it again; nothing was written.")


def _malformed(line: int, message: str) -> InvalidInput:
    return _unreadable(f"line {line}: {message}")


def _normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


def parse_csv(text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _malformed(1, f"not valid CSV ({exc})") from None
    if not header or not any(h.strip() for h in header):
        raise _malformed(1, "the header row is missing (it names the columns: "
                            f"{', '.join(FIELDS)})")
    columns = [_normalise_key(h) for h in header]
    _check_keys(columns, 1, what="column")
    if len(set(columns)) != len(columns):
        raise _malformed(1, "a column appears twice")
    rows: list[Row] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(columns):
                raise _malformed(line, f"{len(cells)} cells, but the header has {len(columns)}")
            rows.append(Row(line, dict(zip(columns, cells, strict=True))))
            if len(rows) > MAX_ROWS:
                raise _malformed(line, f"more than {MAX_ROWS} rows (split the file)")
    except csv.Error as exc:
        raise _malformed(reader.line_num, f"not valid CSV ({exc})") from None
    return rows


class _Located(dict):
    """A JSON object that remembers the line it started on."""

    line = 0


def _line_decoder(text: str) -> json.JSONDecoder:
    """A decoder whose objects carry their line number (the pure-Python scanner allows it)."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    decoder = json.JSONDecoder()
    parse_object = decoder.parse_object

    def located(s_and_end, *args):
        obj, end = parse_object(s_and_end, *args)
        result = _Located(obj)
        result.line = bisect.bisect_right(starts, s_and_end[1] - 1)
        return result, end

    decoder.parse_object = located
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder


def parse_json(text: str) -> list[Row]:
    try:
        data = _line_decoder(text).decode(text)
    except json.JSONDecodeError as exc:
        raise _malformed(exc.lineno, f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise _malformed(1, "nested too deeply") from None
    if isinstance(data, dict):
        top = {_normalise_key(k): v for k, v in data.items()}
        _check_keys(list(top), getattr(data, "line", 1), what="key", allowed=("credentials",))
        if "credentials" not in top:
            raise _malformed(getattr(data, "line", 1),
                             'expected a list of credentials or {"credentials": [...]}')
        data = top["credentials"]
    if not isinstance(data, list):
        raise _malformed(1, 'expected a list of credentials or {"credentials": [...]}')
    if len(data) > MAX_ROWS:
        raise _malformed(1, f"more than {MAX_ROWS} credentials (split the file)")
    rows: list[Row] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise _malformed(1, f"credential {index + 1} is not an object")
        line = getattr(item, "line", 1)
        keys = {_normalise_key(k): v for k, v in item.items()}
        _check_keys(list(keys), line, what="key")
        values: dict[str, str] = {}
        for key, value in keys.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise _malformed(line, f"{key} must be a string")
            values[key] = value
        rows.append(Row(line, values))
    return rows


def _check_keys(keys: list[str], line: int, *, what: str,
                allowed: tuple[str, ...] = FIELDS) -> None:
    # a header cell is never echoed: in a file without a header row it is a token or a secret
    unknown = [i for i, k in enumerate(keys) if k not in allowed]
    if unknown:
        raise _malformed(line, f"{what} {unknown[0] + 1} is not a known {what} name (allowed: "
                               f"{', '.join(allowed)}; does the file start with its header?)")
    if allowed is FIELDS:
        missing = [k for k in REQUIRED if k not in keys]
        if missing and what == "column":
            raise _malformed(line, f"the required column {missing[0]!r} is missing")


def _check_rows(rows: list[Row]) -> None:
    if not rows:
        raise _malformed(1, "no credentials in the file")
    seen: dict[str, int] = {}
    for row in rows:
        for name in REQUIRED:
            if not row.values.get(name, "").strip():
                raise _malformed(row.line, f"{name} is empty")
        if row.id in seen:
            # only an id that can be one is named: a misplaced column may hold a token
            named = f"credential {row.id!r}" if is_credential_id(row.id) else "the same id"
            raise _malformed(row.line, f"{named} appears again (first on line {seen[row.id]})")
        seen[row.id] = row.line


# -- importing one row ----------------------------------------------------------------------


def _import_row(importer: Importer, row: Row) -> tuple[str, str]:
    """("imported" | "skipped" | "failed", why); never raises for one row's problems."""
    now = datetime.now(UTC)
    token = row.values["refresh_token"].strip()
    try:
        existing = importer.vault.get_credential(row.id)
    except CredentialNotFound:
        existing = None
    except BrokerError as exc:
        return "failed", f"line {row.line}: {exc}"
    if existing is not None and existing.status(now, importer.settings.warn_days) in _WORKING:
        return "skipped", "already active in the vault (its token is kept)"
    try:
        spec = _spec(row, existing, now)
        if existing is not None:
            _same_app(row, spec, existing)
    except InvalidInput as exc:
        return "failed", f"line {row.line}: {exc}"
    if token == PLACEHOLDER_VALUE:
        return "failed", f"line {row.line}: refresh_token is not a token"
    try:
        with importer.leases.hold(spec.id, wait=LEASE_WAIT):
            return _redeem_and_store(importer, row, spec, existing, token, now)
    except Conflict as exc:
        return "failed", f"line {row.line}: {exc} Import the file again later."
    except BrokerError as exc:
        return "failed", f"line {row.line}: {exc}"


def _spec(row: Row, existing: Credential | None, now: datetime) -> CredentialSpec:
    data: dict[str, Any] = {k: v for k, v in row.values.items() if k in SPEC_FIELDS}
    if existing is not None:  # blank cells keep what is registered
        for name in ("environment", "product", "marketplace", "tenant_id", "client_id"):
            if not str(data.get(name) or "").strip():
                data[name] = getattr(existing, name) or ""
    return CredentialSpec.from_mapping(data).validated(now=now, existing=existing)


def _same_app(row: Row, spec: CredentialSpec, existing: Credential) -> None:
    if spec.tenant_id != existing.tenant_id or (spec.client_id or None) != existing.client_id:
        raise InvalidInput(errors={"tenant_id": (
            f"credential {existing.id!r} is registered with another tenant or app; change it "
            f"with `broker credentials edit {existing.id}` first")})


def _redeem_and_store(importer: Importer, row: Row, spec: CredentialSpec,
                      existing: Credential | None, token: str,
                      now: datetime) -> tuple[str, str]:
    vault = importer.vault
    if existing is not None:  # re-read under the lease: a consent may have just landed
        existing = vault.get_credential(spec.id)
        if existing.status(now, importer.settings.warn_days) in _WORKING:
            return "skipped", "already active in the vault (its token is kept)"
    probe = existing or _unsaved_credential(vault, spec)
    identity = importer.identity
    if spec.client_id and spec.client_secret:
        # the secret is not in the vault yet (and is not stored unless the token works)
        identity = Identity(importer.settings, _GivenSecret(spec.client_secret))
    redemption = importer.retrying(lambda: identity.redeem(probe, token))
    claims = redemption.claims
    user = str(claims.get("upn") or claims.get("unique_name") or claims.get("oid") or "")
    mfa = "mfa" in (claims.get("amr") or [])
    if existing is None:
        credential = importer.register(spec)
    else:
        if spec.client_id and spec.client_secret:
            vault.write_client_secret(spec.id, spec.client_secret,
                                      secret_expiry_instant(spec.secret_expires_on))
        credential = existing
    version = vault.write_token(
        credential, redemption.refresh_token, source=Source.IMPORT, obtained_at=datetime.now(UTC),
        consented_by=user, mfa=mfa, roles=role_names(claims),
    )
    log.info("imported %s as version %s (line %d)", spec.id, version.version, row.line)
    return "imported", "" if mfa else ("the token does not show MFA, so Partner Center will "
                                       "refuse it: have an admin consent again with MFA")


def _unsaved_credential(vault, spec: CredentialSpec) -> Credential:
    """The credential as it will be registered, to redeem with before anything is written."""
    return Credential(
        id=spec.id, environment=spec.environment, product=spec.product,
        marketplace=spec.marketplace, tenant_id=spec.tenant_id, client_id=spec.client_id,
        stored_status=Status.PENDING_CONSENT, secret_id=vault.secret_id(spec.id),
        latest=None,
    )


class _GivenSecret:
    """Stands in for the vault where Identity reads a client secret not stored yet."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def read_client_secret(self, credential_id: str) -> str:
        return self._secret

    def __repr__(self) -> str:
        return "_GivenSecret(<hidden>)"
