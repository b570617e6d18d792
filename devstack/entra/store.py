"""What the authority remembers, in SQLite (`<state-dir>/entra.db`) so a restart keeps it.

Codes and refresh tokens are stored as SHA-256 hashes, never as the strings handed out.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .directory import ALL_PRINCIPALS, Grant

DB_FILE = "entra.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_codes (
    code_hash TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    issued_at REAL NOT NULL,
    redeemed_at REAL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_oid TEXT NOT NULL,
    upn TEXT NOT NULL,
    resource TEXT NOT NULL,
    scopes TEXT NOT NULL,
    mfa INTEGER NOT NULL,
    auth_time REAL NOT NULL,
    issued_at REAL NOT NULL,
    last_used_at REAL NOT NULL,
    redemptions INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_user ON refresh_tokens (tenant_id, user_oid);
CREATE TABLE IF NOT EXISTS grants (
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    resource TEXT NOT NULL,
    permission TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, client_id, principal, resource, permission)
);
CREATE TABLE IF NOT EXISTS revocations (
    tenant_id TEXT NOT NULL,
    user_oid TEXT NOT NULL,
    valid_from REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_oid)
);
"""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    tenant_id: str
    client_id: str
    user_oid: str
    upn: str
    resource: str
    scopes: tuple[str, ...]
    mfa: bool
    auth_time: float  # emulated epoch of the interactive sign-in behind this grant
    issued_at: float
    last_used_at: float
    redemptions: int
    revoked: bool


class Store:
    def __init__(self, state_dir: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(state_dir / DB_FILE, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def reset(self, seeded: Iterable[Grant], now: float) -> None:
        with self._lock:
            for table in ("auth_codes", "refresh_tokens", "grants", "revocations"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        self.add_grants(seeded, now)

    # authorization codes

    def add_code(self, code: str, payload: dict, now: float) -> None:
        with self._lock:
            self._db.execute("INSERT INTO auth_codes VALUES (?, ?, ?, NULL)",
                             (digest(code), json.dumps(payload), now))

    def code(self, code: str) -> tuple[dict, float, float | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT payload, issued_at, redeemed_at FROM auth_codes WHERE code_hash = ?",
                (digest(code),),
            ).fetchone()
        return (json.loads(row[0]), row[1], row[2]) if row else None

    def redeem_code(self, code: str, now: float) -> bool:
        """Mark a code used; False if it already was (so two racing redemptions get one)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE auth_codes SET redeemed_at = ? WHERE code_hash = ? "
                "AND redeemed_at IS NULL", (now, digest(code)))
        return cursor.rowcount == 1

    # refresh tokens

    def add_refresh_token(self, token: str, *, tenant_id: str, client_id: str, user_oid: str,
                          upn: str, resource: str, scopes: Iterable[str], mfa: bool,
                          auth_time: float, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO refresh_tokens (token_hash, tenant_id, client_id, user_oid, upn, "
                "resource, scopes, mfa, auth_time, issued_at, last_used_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (digest(token), tenant_id, client_id, user_oid, upn.lower(), resource,
                 " ".join(scopes), int(mfa), auth_time, now, now),
            )

    def refresh_token(self, token: str) -> RefreshToken | None:
        with self._lock:
            row = self._db.execute(
                "SELECT token_hash, tenant_id, client_id, user_oid, upn, resource, scopes, mfa, "
                "auth_time, issued_at, last_used_at, redemptions, revoked "
                "FROM refresh_tokens WHERE token_hash = ?", (digest(token),),
            ).fetchone()
        if row is None:
            return None
        return RefreshToken(*row[:6], tuple(row[6].split()), bool(row[7]), *row[8:12],
                            bool(row[12]))

    def use_refresh_token(self, token_hash: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE refresh_tokens SET last_used_at = ?, redemptions = redemptions + 1 "
                "WHERE token_hash = ?", (now, token_hash))

    def revoke_user(self, tenant_id: str, user_oid: str, now: float) -> int:
        """Revoke every refresh token of a user; returns how many were still live."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE tenant_id = ? AND user_oid = ? "
                "AND revoked = 0", (tenant_id, user_oid))
            self._db.execute(
                "INSERT INTO revocations VALUES (?, ?, ?) ON CONFLICT (tenant_id, user_oid) "
                "DO UPDATE SET valid_from = excluded.valid_from", (tenant_id, user_oid, now))
        return cursor.rowcount

    def tokens_valid_from(self, tenant_id: str, user_oid: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT valid_from FROM revocations WHERE tenant_id = ? AND user_oid = ?",
                (tenant_id, user_oid)).fetchone()
        return row[0] if row else None

    # consent

    def add_grants(self, grants: Iterable[Grant], now: float) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO grants VALUES (?, ?, ?, ?, ?, ?)",
                [(g.tenant_id, g.client_id, g.principal, g.resource, g.permission, now)
                 for g in grants])

    def granted(self, tenant_id: str, client_id: str, user_oid: str) -> set[tuple[str, str]]:
        """(resource, permission) pairs consented for this user or for the whole tenant."""
        with self._lock:
            rows = self._db.execute(
                "SELECT resource, permission FROM grants WHERE tenant_id = ? AND client_id = ? "
                "AND principal IN (?, ?)",
                (tenant_id, client_id, ALL_PRINCIPALS, user_oid)).fetchall()
        return {(r, p) for r, p in rows}

    def has_service_principal(self, tenant_id: str, client_id: str) -> bool:
        """Any consent in the tenant provisions the app's service principal there."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM grants WHERE tenant_id = ? AND client_id = ? LIMIT 1",
                (tenant_id, client_id)).fetchone()
        return row is not None
