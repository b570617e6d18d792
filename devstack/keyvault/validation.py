"""What Key Vault accepts in a request: api-version, names, paging, bodies and their limits.

Everything is checked before the store is touched, so a malformed request never changes state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import errors

# every version the SDKs have shipped from 7.0 up to azure-keyvault-secrets 4.12's default
API_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
LATEST_API_VERSION = API_VERSIONS[-1]
# previews the SDKs' betas sent (azure-rest-api-specs keyvault data-plane preview folders)
PREVIEW_API_VERSIONS = ("7.2-preview", "7.3-preview", "7.4-preview.1", "7.5-preview.1",
                        "7.6-preview.1", "7.6-preview.2", "2025-06-01-preview")

NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VERSION = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_VALUE_BYTES = 25 * 1024
MAX_TAGS = 15
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
MAX_PAGE = 25


def api_version(args: Mapping[str, str]) -> str:
    version = args.get("api-version")
    if not version:
        raise errors.bad_parameter("The api-version query parameter is required.")
    if version not in API_VERSIONS and version not in PREVIEW_API_VERSIONS:
        raise errors.bad_parameter(
            f"The specified version ({version}) is not recognized. Consider using the latest "
            f"supported version ({LATEST_API_VERSION})."
        )
    return version


def name(value: str) -> str:
    if not NAME.match(value):
        raise errors.bad_parameter(f"The request URI contains an invalid name: {value}")
    return value


def is_version(value: str) -> bool:
    return bool(VERSION.match(value))


def max_results(args: Mapping[str, str]) -> int:
    text = args.get("maxresults")
    if text is None:
        return MAX_PAGE
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PAGE:
        raise errors.bad_parameter(
            f"Invalid maxresults value: {text}. It must be between 1 and {MAX_PAGE}."
        )
    return count


@dataclass(frozen=True)
class SetParameters:
    value: str
    content_type: str | None = None
    tags: dict[str, str] | None = None
    enabled: bool = True
    not_before: int | None = None
    expires: int | None = None


def set_parameters(body: bytes) -> SetParameters:
    data = _json_object(body)
    value = data.get("value")
    if not isinstance(value, str):
        raise errors.bad_parameter("The secret value is required and must be a string.")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise errors.invalid_property()
    changes = _properties(data)
    return SetParameters(value=value, **changes)


def update_parameters(body: bytes) -> dict:
    """Only the properties present: content_type, tags, enabled, not_before, expires."""
    return _properties(_json_object(body))


def restore_blob(body: bytes) -> str:
    value = _json_object(body).get("value")
    if not isinstance(value, str) or not value:
        raise errors.bad_parameter("The backup blob is required.")
    return value


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_parameter("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise errors.bad_parameter("The request body must be a JSON object.")
    return data


def _properties(data: dict) -> dict:
    """contentType, tags and attributes that are present, checked; read-only ones ignored."""
    changes: dict = {}
    if "contentType" in data:
        content_type = data["contentType"]
        if content_type is not None and not isinstance(content_type, str):
            raise errors.invalid_property()
        changes["content_type"] = content_type
    if "tags" in data:
        changes["tags"] = _tags(data["tags"])
    attributes = data.get("attributes")
    if attributes is None:
        return changes
    if not isinstance(attributes, dict):
        raise errors.invalid_property()
    if attributes.get("enabled") is not None:
        if not isinstance(attributes["enabled"], bool):
            raise errors.invalid_property()
        changes["enabled"] = attributes["enabled"]
    for key, attr in (("nbf", "not_before"), ("exp", "expires")):
        if key in attributes:
            stamp = attributes[key]
            if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int)):
                raise errors.invalid_property()
            changes[attr] = stamp
    return changes


def _tags(tags: object) -> dict[str, str] | None:
    if tags is None:
        return None
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise errors.invalid_property()
    for key, value in tags.items():
        if not isinstance(value, str) or not key or len(key) > MAX_TAG_NAME \
                or len(value) > MAX_TAG_VALUE:
            raise errors.invalid_property()
    return dict(tags)
