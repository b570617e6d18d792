"""Backup blobs: every version of one secret, sealed so that only a devstack vault restores it.

Azure's blobs are encrypted and restore only into vaults of the same subscription and
geography. Here every devstack is "the same subscription": the blob is AES-GCM sealed with one
key shared by all devstacks, so it restores into any of them and any tampering is detected. The
key ships in this source file, so the sealing hides nothing from a determined reader; it keeps
the value from being read off a blob at a glance, which is all a local stand-in can promise.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import errors, validation
from .store import Version

MAGIC = b"DSKV1"
KEY = hashlib.sha256(b"devstack key vault backup sealing key").digest()


def seal(versions: list[Version]) -> str:
    """The base64url `value` of a BackupSecretResult."""
    payload = zlib.compress(json.dumps([dataclasses.asdict(v) for v in versions]).encode())
    nonce = os.urandom(12)
    blob = MAGIC + nonce + AESGCM(KEY).encrypt(nonce, payload, MAGIC)
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def unseal(value: str) -> list[Version]:
    """The versions in a blob, oldest first; `Malformed backup blob` if it is not intact."""
    try:
        blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if not blob.startswith(MAGIC):
            raise ValueError("not a devstack backup")
        nonce, sealed = blob[len(MAGIC):len(MAGIC) + 12], blob[len(MAGIC) + 12:]
        records = json.loads(zlib.decompress(AESGCM(KEY).decrypt(nonce, sealed, MAGIC)))
        versions = [Version(**record) for record in records]
    except (ValueError, TypeError, InvalidTag, zlib.error) as exc:
        raise errors.malformed_backup() from exc
    if not versions or len({v.name.lower() for v in versions}) != 1:
        raise errors.malformed_backup()
    validation.name(versions[0].name)
    return versions
