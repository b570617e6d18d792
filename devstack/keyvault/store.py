"""The vault's secrets, versions and soft-deleted secrets, kept in SQLite under the state dir.

SQLite in WAL mode, one connection behind a lock, every operation one transaction: a devstack
killed mid-write restarts with the store exactly as of the last committed operation, and the
threaded server never sees half a write. `synchronous=NORMAL` keeps commits cheap; in WAL mode it
can only lose the last commits to a power cut, never consistency. Names are case-insensitive
and keep the case they were created with, like Key Vault's.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

DB_FILE = "vault.db"
RECOVERABLE_DAYS = 90
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    deleted_date INTEGER,
    scheduled_purge_date INTEGER
);
CREATE INDEX IF NOT EXISTS secrets_purge ON secrets (scheduled_purge_date);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL COLLATE NOCASE REFERENCES secrets (name) ON DELETE CASCADE,
    version TEXT NOT NULL,
    value TEXT NOT NULL,
    content_type TEXT,
    enabled INTEGER NOT NULL,
    not_before INTEGER,
    expires INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    tags TEXT,
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS versions_by_seq ON versions (name, seq);
-- a version with its secret's deletion state: the ten Version fields, then the deletion
CREATE VIEW IF NOT EXISTS version_rows AS
    SELECT v.name, v.version, v.value, v.content_type, v.enabled, v.not_before, v.expires,
           v.created, v.updated, v.tags, s.deleted_date, s.scheduled_purge_date, v.seq
    FROM versions v JOIN secrets s ON s.name = v.name;
CREATE VIEW IF NOT EXISTS latest_rows AS
    SELECT * FROM version_rows r
    WHERE r.seq = (SELECT MAX(seq) FROM versions WHERE versions.name = r.name);
"""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    value: str
    content_type: str | None = None
    enabled: bool = True
    not_before: int | None = None
    expires: int | None = None
    created: int = 0
    updated: int = 0
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class Deletion:
    deleted_date: int
    scheduled_purge_date: int


class Refused(Exception):
    """Why the store refused an operation; carries the secret's name (and version)."""

    def __init__(self, name: str, version: str | None = None):
        super().__init__(name)
        self.name, self.version = name, version


class SecretMissing(Refused):
    """No active secret (or no such version) by that name."""


class DeletedMissing(Refused):
    """No soft-deleted secret by that name."""


class NameDeleted(Refused):
    """The name belongs to a soft-deleted secret: recover or purge it first."""


class NameTaken(Refused):
    """An active secret already has that name (restore refuses to overwrite it)."""


def new_version_id() -> str:
    return secrets.token_hex(16)


class Store:
    def __init__(self, state_dir: Path, clock: Callable[[], float], db_file: str = DB_FILE):
        self._clock = clock
        self._lock = threading.Lock()
        path = state_dir / db_file
        path.touch(mode=0o600)  # it holds secret values; WAL and SHM files inherit the mode
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=5000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; expired soft-deleted secrets are purged first, as Azure does."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM secrets WHERE scheduled_purge_date <= ?", (self.now(),)
                )
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def now(self) -> int:
        return int(self._clock())

    # -- secrets ------------------------------------------------------------------------------

    def set(self, name: str, value: str, *, content_type: str | None = None,
            tags: dict[str, str] | None = None, enabled: bool = True,
            not_before: int | None = None, expires: int | None = None) -> Version:
        """Add a new version, creating the secret if needed; refuses a soft-deleted name."""
        with self._transaction() as db:
            now = self.now()
            stored = self._secret_row(db, name)
            if stored is not None and stored[1] is not None:
                raise NameDeleted(stored[0])
            if stored is None:
                db.execute("INSERT INTO secrets (name) VALUES (?)", (name,))
            else:
                name = stored[0]
            version = Version(name, new_version_id(), value, content_type, enabled, not_before,
                              expires, now, now, tags)
            self._insert(db, version)
            return version

    def get(self, name: str, version: str | None = None) -> Version:
        """The latest version of an active secret, or the given version."""
        with self._transaction() as db:
            return self._active_version(db, name, version)

    def update(self, name: str, version: str | None, changes: dict) -> Version:
        """Change a version's content type, tags or attributes (never its value)."""
        with self._transaction() as db:
            current = self._active_version(db, name, version)
            updated = replace(current, updated=self.now(), **changes)
            db.execute(
                "UPDATE versions SET content_type = ?, enabled = ?, not_before = ?, expires = ?, "
                "updated = ?, tags = ? WHERE name = ? AND version = ?",
                (updated.content_type, updated.enabled, updated.not_before, updated.expires,
                 updated.updated, _tags_json(updated.tags), current.name, current.version),
            )
            return updated

    def list_latest(self, after: str | None, limit: int) -> list[Version]:
        """Active secrets' latest versions ordered by name, those after `after`."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM latest_rows WHERE deleted_date IS NULL AND name > ? "
                "ORDER BY name LIMIT ?",
                (after or "", limit),
            ).fetchall()
            return [_version(row) for row in rows]

    def list_versions(self, name: str, after: str | None, limit: int) -> list[Version]:
        """An active secret's versions ordered by version id; none for an unknown name."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM version_rows WHERE name = ? AND deleted_date IS NULL "
                "AND version > ? ORDER BY version LIMIT ?",
                (name, after or "", limit),
            ).fetchall()
            return [_version(row) for row in rows]

    def versions(self, name: str) -> list[Version]:
        """Every version of an active secret, oldest first (what a backup holds)."""
        with self._transaction() as db:
            self._active_version(db, name, None)
            rows = db.execute(
                "SELECT * FROM version_rows WHERE name = ? ORDER BY seq", (name,)
            ).fetchall()
            return [_version(row) for row in rows]

    def restore(self, versions: list[Version]) -> Version:
        """Recreate a backed-up secret with its versions; refuses a name in use or deleted."""
        with self._transaction() as db:
            name = versions[0].name
            stored = self._secret_row(db, name)
            if stored is not None:
                raise NameDeleted(stored[0]) if stored[1] is not None else NameTaken(stored[0])
            db.execute("INSERT INTO secrets (name) VALUES (?)", (name,))
            for version in versions:
                self._insert(db, version)
            return versions[-1]

    # -- soft delete --------------------------------------------------------------------------

    def delete(self, name: str) -> tuple[Version, Deletion]:
        """Soft-delete every version; the secret is purged after the retention period."""
        with self._transaction() as db:
            latest = self._active_version(db, name, None)
            now = self.now()
            deletion = Deletion(now, now + RECOVERABLE_DAYS * 86400)
            db.execute(
                "UPDATE secrets SET deleted_date = ?, scheduled_purge_date = ? WHERE name = ?",
                (deletion.deleted_date, deletion.scheduled_purge_date, latest.name),
            )
            return latest, deletion

    def get_deleted(self, name: str) -> tuple[Version, Deletion]:
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM latest_rows WHERE name = ? AND deleted_date IS NOT NULL",
                (name,),
            ).fetchone()
            if row is None:
                raise DeletedMissing(name)
            return _version(row), _deletion(row)

    def list_deleted(self, after: str | None, limit: int) -> list[tuple[Version, Deletion]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM latest_rows WHERE deleted_date IS NOT NULL AND name > ? "
                "ORDER BY name LIMIT ?",
                (after or "", limit),
            ).fetchall()
            return [(_version(row), _deletion(row)) for row in rows]

    def recover(self, name: str) -> Version:
        """Undo a soft delete; returns the latest version."""
        with self._transaction() as db:
            stored = self._secret_row(db, name)
            if stored is None or stored[1] is None:
                raise DeletedMissing(name)
            db.execute(
                "UPDATE secrets SET deleted_date = NULL, scheduled_purge_date = NULL "
                "WHERE name = ?", (name,),
            )
            return self._active_version(db, name, None)

    def purge(self, name: str) -> None:
        """Delete a soft-deleted secret and all its versions for good."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM secrets WHERE name = ? AND deleted_date IS NOT NULL", (name,)
            )
            if cursor.rowcount == 0:
                raise DeletedMissing(name)

    def wipe(self) -> None:
        """Forget everything (devstack's `POST /reset`)."""
        with self._transaction() as db:
            db.execute("DELETE FROM versions")
            db.execute("DELETE FROM secrets")

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _secret_row(db: sqlite3.Connection, name: str) -> tuple[str, int | None] | None:
        return db.execute(
            "SELECT name, deleted_date FROM secrets WHERE name = ?", (name,)
        ).fetchone()

    @staticmethod
    def _active_version(db: sqlite3.Connection, name: str, version: str | None) -> Version:
        if version is None:
            row = db.execute(
                "SELECT * FROM latest_rows WHERE name = ? AND deleted_date IS NULL",
                (name,),
            ).fetchone()
        else:
            row = db.execute(
                "SELECT * FROM version_rows WHERE name = ? AND version = ? "
                "AND deleted_date IS NULL",
                (name, version.lower()),
            ).fetchone()
        if row is None:
            raise SecretMissing(name, version)
        return _version(row)

    @staticmethod
    def _insert(db: sqlite3.Connection, v: Version) -> None:
        db.execute(
            "INSERT INTO versions (name, version, value, content_type, enabled, not_before, "
            "expires, created, updated, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (v.name, v.version, v.value, v.content_type, v.enabled, v.not_before, v.expires,
             v.created, v.updated, _tags_json(v.tags)),
        )


def _tags_json(tags: dict[str, str] | None) -> str | None:
    return None if tags is None else json.dumps(tags, sort_keys=True)


def _version(row: tuple) -> Version:
    name, version, value, content_type, enabled, nbf, exp, created, updated, tags = row[:10]
    return Version(name, version, value, content_type, bool(enabled), nbf, exp, created, updated,
                   None if tags is None else json.loads(tags))


def _deletion(row: tuple) -> Deletion:
    return Deletion(deleted_date=row[10], scheduled_purge_date=row[11])
