"""Reading the cookies of Starlette's own SessionMiddleware, so switching loses no session.

Starlette signs ``base64(json)`` with itsdangerous' ``TimestampSigner`` defaults:
the HMAC-SHA1 key is ``sha1(b"itsdangerous.Signer" + b"signer" + secret)``, and the
cookie is ``<payload>.<timestamp>.<signature>``, both last parts unpadded base64url.
Only reading is needed: the migrated data is then stored server-side under a new id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["read_starlette_cookie"]

_SALT = b"itsdangerous.Signer"
_MAX_LEGACY_COOKIE = 8192  # browsers cap cookies near 4 KB; anything far bigger is not one


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_starlette_cookie(value: str, secret_keys: Sequence[str], max_age: int | None) -> dict[str, Any] | None:
    """The session a valid, unexpired Starlette cookie holds, or None."""
    if len(value) > _MAX_LEGACY_COOKIE or not value.isascii():
        return None
    signed, _, signature = value.rpartition(".")
    payload, _, stamp = signed.rpartition(".")
    if not payload or not stamp or not signature:
        return None
    try:
        given = _b64url_decode(signature)
        issued = int.from_bytes(_b64url_decode(stamp), "big")
    except (binascii.Error, ValueError):
        return None
    message = signed.encode("ascii")
    for secret in secret_keys:
        key = hashlib.sha1(_SALT + b"signer" + secret.encode("utf-8")).digest()  # noqa: S324 - Starlette's format
        if hmac.compare_digest(hmac.new(key, message, hashlib.sha1).digest(), given):
            break
    else:
        return None
    age = int(time.time()) - issued
    if age < 0 or (max_age is not None and age > max_age):
        return None
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None
