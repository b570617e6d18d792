"""List pages: at most `maxresults` items and an absolute `nextLink` carrying a `$skiptoken`.

The token is opaque to clients (base64url JSON naming the last item served, like Key Vault's
`{"NextMarker": ...}`); the SDK follows `nextLink` as given and re-adds its api-version. With
realistic timing (`settings.py`) pages come back short or empty, still with a `nextLink`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from . import errors, validation
from .settings import short_page_size


@dataclass(frozen=True)
class Position:
    """Where a page starts: after the item named `marker`, and how many empty pages led here."""

    marker: str | None = None
    skips: int = 0


def after(args: Mapping[str, str]) -> str | None:
    """The last item of the previous page, from `$skiptoken`; None on the first page."""
    return position(args).marker


def position(args: Mapping[str, str]) -> Position:
    token = args.get("$skiptoken")
    if token is None:
        return Position()
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        marker, skips = data["NextMarker"], data.get("Skips", 0)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise errors.bad_parameter("The $skiptoken is not valid.") from exc
    if not isinstance(marker, str) or isinstance(skips, bool) or not isinstance(skips, int) \
            or not 0 <= skips <= 10:
        raise errors.bad_parameter("The $skiptoken is not valid.")
    return Position(marker or None, skips)


def page(items: list, key: Callable, base: str, path: str, args: Mapping[str, str],
         render: Callable, *, short: bool = False) -> dict:
    """`items` holds up to one more than a page; the extra one means a next page exists.

    With `short`, the page serves only part of what it could (maybe nothing) and links on.
    """
    size = validation.max_results(args)
    start = position(args)
    count = short_page_size(size, start.marker, start.skips) if short else size
    count = min(count, len(items))
    body: dict = {"value": [render(item) for item in items[:count]], "nextLink": None}
    if len(items) > count:
        following = Position(key(items[count - 1]), 0) if count else \
            Position(start.marker, start.skips + 1)
        token = base64.urlsafe_b64encode(json.dumps(
            {"NextMarker": following.marker or "", "Skips": following.skips}).encode())
        query = {"api-version": args["api-version"],
                 "$skiptoken": token.decode().rstrip("=")}
        if "maxresults" in args:
            query["maxresults"] = str(size)
        body["nextLink"] = f"{base}{path}?{urlencode(query, safe='$')}"
    return body
