"""Network failures told apart: a host that does not exist or does not listen, or a slow one.

A mistyped vault host or a closed port will not heal by retrying, so a consumer should hear at
once which host failed and why, not wait through the SDK's connection retries for a "try
later"; a timeout, by contrast, is the network or the service being slow, and worth retrying.
`unreachable(exc)` reads the cause from the exception chain (azure-core wraps urllib3 and
requests, which wrap `socket`); `FailFastRetry` is azure-core's retry policy minus the retries
of an unreachable host.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from azure.core.pipeline.policies import RetryPolicy

# errno values that mean "nothing listens there", not "slow"
_REFUSED = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}


def _chain(exc: BaseException | None):
    """The exception, what it wraps (azure-core's `inner_exception`, urllib3's `reason`) and
    its causes, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        todo.extend([current.__cause__, current.__context__,
                     getattr(current, "inner_exception", None),
                     reason if isinstance(reason, BaseException) else None])
        todo.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))


def unreachable(exc: BaseException) -> str | None:
    """Why the host cannot be reached ("not found" or "refused the connection"), or None
    when the failure may pass (a timeout, a reset, a TLS error)."""
    for current in _chain(exc):
        if isinstance(current, TimeoutError):
            return None
        name = type(current).__name__
        if "Timeout" in name:
            return None
        if isinstance(current, socket.gaierror) or name == "NameResolutionError":
            return "was not found (DNS)"
        if isinstance(current, ConnectionRefusedError) or (
                isinstance(current, OSError) and current.errno in _REFUSED):
            return "refused the connection (nothing listens on that port)"
    return None


def timed_out(exc: BaseException) -> bool:
    return any(isinstance(c, TimeoutError) or "Timeout" in type(c).__name__
               for c in _chain(exc))


class FailFastRetry(RetryPolicy):
    """azure-core's RetryPolicy, except that a host that is not found or refuses the
    connection is not tried again (timeouts, resets, 5xx and 429 still are)."""

    def increment(self, settings: dict[str, Any], response: Any = None,
                  error: Exception | None = None) -> bool:
        if error is not None and unreachable(error):
            return False
        return super().increment(settings, response=response, error=error)
