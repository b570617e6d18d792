"""Requests counted at the server, per service, method and route template.

The benchmarks read them (`GET /stats` on the admin endpoint) to report requests per rotation
by endpoint and creates per window as the server saw them, not as clients think they sent
them. One lock and a dict increment per request: cheap enough to stay on all the time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from flask import Flask, request

UNMATCHED = "(unmatched)"


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str, int]] = Counter()
        self._since = time.time()

    def record(self, service: str, method: str, route: str, status: int) -> None:
        with self._lock:
            self._counts[(service, method, route, status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._since = time.time()

    def snapshot(self) -> dict:
        """`{"since", "total", "requests": [{service, method, route, count, statuses}]}`."""
        with self._lock:
            counts, since = dict(self._counts), self._since
        rows: dict[tuple[str, str, str], dict] = {}
        for (service, method, route, status), count in sorted(counts.items()):
            row = rows.setdefault((service, method, route), {
                "service": service, "method": method, "route": route, "count": 0,
                "statuses": {}})
            row["count"] += count
            row["statuses"][str(status)] = row["statuses"].get(str(status), 0) + count
        return {"since": since, "total": sum(counts.values()), "requests": list(rows.values())}


def track(app: Flask, service: str, stats: RequestStats) -> None:
    """Count every response `app` sends, error responses included."""

    @app.after_request
    def count(response):
        rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        stats.record(service, request.method, rule, response.status_code)
        return response
