"""List pages: at most `maxresults` items and an absolute `nextLink` carrying a `$skiptoken`.

The token is opaque to clients (base64url JSON naming the last item served, like Key Vault's
`{"NextMarker": ...}`); the SDK follows `nextLink` as given and re-adds its api-version.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from . import errors, validation


def after(args: Mapping[str, str]) -> str | None:
    """The last item of the previous page, from `$skiptoken`; None on the first page."""
    token = args.get("$skiptoken")
    if token is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        marker = data["NextMarker"]
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_parameter("The $skiptoken is not valid.") from exc
    if not isinstance(marker, str):
        raise errors.bad_parameter("The $skiptoken is not valid.")
    return marker


def page(items: list, key: Callable, base: str, path: str, args: Mapping[str, str],
         render: Callable) -> dict:
    """`items` holds up to one more than a page; the extra one means a next page exists."""
    size = validation.max_results(args)
    body: dict = {"value": [render(item) for item in items[:size]], "nextLink": None}
    if len(items) > size:
        marker = key(items[size - 1])
        token = base64.urlsafe_b64encode(json.dumps({"NextMarker": marker}).encode())
        query = {"api-version": args["api-version"],
                 "$skiptoken": token.decode().rstrip("=")}
        if "maxresults" in args:
            query["maxresults"] = str(size)
        body["nextLink"] = f"{base}{path}?{urlencode(query, safe='$')}"
    return body
