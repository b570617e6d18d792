"""Browser sign-in sessions and the authorization requests on their way through the pages.

Both live in memory on the server; the browser holds only an opaque session id cookie, and each
page's form carries the request's `ctx` id and a `flowToken` that changes with every page.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .directory import User

PENDING_LIFETIME = 3600  # real seconds a sign-in page stays usable


@dataclass
class BrowserSession:
    sid: str
    user: User | None = None
    mfa: bool = False
    auth_time: float = 0.0  # emulated
    auth_time_real: float = 0.0
    session_state: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Pending:
    """An authorization request on its way through the sign-in pages."""

    ctx_id: str
    sid: str
    request: Any  # auth_request.AuthRequest
    created: float = field(default_factory=time.monotonic)
    stage: str = ""  # the page last shown; only its form is accepted next
    flow_token: str = ""
    user: User | None = None
    mfa: bool = False
    auth_time: float = 0.0
    auth_time_real: float = 0.0
    force_login: bool = False
    choose_account: bool = False
    consented: bool = False
    otp: str = ""
    otp_failures: int = 0


class Sessions:
    """Browser sign-in sessions and pending requests, server-side and in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, BrowserSession] = {}
        self._pending: dict[str, Pending] = {}

    def new(self) -> BrowserSession:
        session = BrowserSession(secrets.token_urlsafe(32))
        with self._lock:
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> BrowserSession | None:
        if not sid:
            return None
        with self._lock:
            return self._sessions.get(sid)

    def drop(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def drop_user(self, user: User) -> None:
        with self._lock:
            for sid in [s for s, v in self._sessions.items() if v.user == user]:
                del self._sessions[sid]

    def add_pending(self, pending: Pending) -> None:
        with self._lock:
            now = time.monotonic()
            for key in [k for k, v in self._pending.items() if now - v.created > PENDING_LIFETIME]:
                del self._pending[key]
            self._pending[pending.ctx_id] = pending

    def pending(self, ctx_id: str) -> Pending | None:
        with self._lock:
            pending = self._pending.get(ctx_id)
        if pending and time.monotonic() - pending.created > PENDING_LIFETIME:
            return None
        return pending

    def finish(self, ctx_id: str) -> None:
        with self._lock:
            self._pending.pop(ctx_id, None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._pending.clear()
