"""The JSON shapes Key Vault answers with: SecretBundle, SecretItem and their deleted forms.

Identifiers are absolute URLs on the host the client called (`https://<host>/secrets/<name>/
<version>`), so `KeyVaultSecretIdentifier` and the SDK's paging work as against Azure. List
items never carry the value; neither do deleted, updated or recovered bundles.
"""

from __future__ import annotations

from .store import RECOVERABLE_DAYS, Deletion, Version

RECOVERY_LEVEL = "Recoverable+Purgeable"


def attributes(v: Version) -> dict:
    attrs: dict = {"enabled": v.enabled}
    if v.not_before is not None:
        attrs["nbf"] = v.not_before
    if v.expires is not None:
        attrs["exp"] = v.expires
    attrs.update(created=v.created, updated=v.updated, recoveryLevel=RECOVERY_LEVEL,
                 recoverableDays=RECOVERABLE_DAYS)
    return attrs


def secret_bundle(base: str, v: Version, *, with_value: bool = True) -> dict:
    bundle: dict = {}
    if with_value:
        bundle["value"] = v.value
    if v.content_type is not None:
        bundle["contentType"] = v.content_type
    bundle["id"] = f"{base}/secrets/{v.name}/{v.version}"
    bundle["attributes"] = attributes(v)
    if v.tags is not None:
        bundle["tags"] = v.tags
    return bundle


def secret_item(base: str, v: Version, *, versioned: bool) -> dict:
    """A list entry: the base id in the secrets list, the versioned id in a versions list."""
    item = secret_bundle(base, v, with_value=False)
    if not versioned:
        item["id"] = f"{base}/secrets/{v.name}"
    return item


def deleted_bundle(base: str, v: Version, d: Deletion) -> dict:
    return {
        "recoveryId": f"{base}/deletedsecrets/{v.name}",
        "deletedDate": d.deleted_date,
        "scheduledPurgeDate": d.scheduled_purge_date,
        **secret_bundle(base, v, with_value=False),
    }


def deleted_item(base: str, v: Version, d: Deletion) -> dict:
    item = deleted_bundle(base, v, d)
    item["id"] = f"{base}/secrets/{v.name}"
    return item
