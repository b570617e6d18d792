"""The emulated clock: real time plus an offset that `POST /clock` moves forward.

It drives what Azure measures in days (refresh-token inactivity, secret dates). Access tokens
keep real-time `exp` because clients cache them by wall clock, as against real Azure.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class Clock:
    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self._offset = 0.0
        if path.exists():
            try:
                self._offset = float(json.loads(path.read_text())["offset_seconds"])
            except (ValueError, KeyError, TypeError):
                self._offset = 0.0

    def now(self) -> float:
        """Emulated seconds since the epoch."""
        return time.time() + self._offset

    @property
    def offset_seconds(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
            self._save()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._save()

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset_seconds": self._offset}))
        tmp.replace(self._path)
