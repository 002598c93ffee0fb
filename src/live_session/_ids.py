"""Session ids and the signed cookie that carries them.

A cookie value is ``<id>.<issued>.<signature>``: a 256-bit id from the OS CSPRNG,
the Unix time the cookie was issued (hexadecimal), and an HMAC-SHA256 over both.
The store never sees the id itself, only ``store_key(id)``, a SHA-256 hash of it,
so a listing of store keys (or the timing of a lookup) reveals no usable id.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Sequence

__all__ = ["CookieSigner", "new_session_id", "store_key"]

_ID_BYTES = 32  # 256 bits
_ID_LENGTH = 43  # len(token_urlsafe(32))
_SIG_LENGTH = 43  # base64url of a SHA-256 digest, unpadded
_CONTEXT = b"live-session.cookie.v1:"
_MAX_COOKIE = _ID_LENGTH + _SIG_LENGTH + 16


def new_session_id() -> str:
    return secrets.token_urlsafe(_ID_BYTES)


def store_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class CookieSigner:
    """Signs with the first key and accepts a signature by any of them (key rotation)."""

    __slots__ = ("_keys", "_verified", "cache_size")

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("secret_key must not be empty")
        keys = []
        for secret in secret_keys:
            if not secret:
                raise ValueError("secret_key must not contain an empty key")
            keys.append(secret.encode("utf-8"))
        self._keys = tuple(keys)
        # Cookies already verified, so a browser's every request does not pay for an HMAC again.
        # Only intact cookies get in (a changed byte is another string, checked afresh); bounded.
        # Each with its store key, so a cached cookie costs no SHA-256 either.
        self._verified: dict[str, tuple[str, int, bool, str]] = {}
        self.cache_size = 10_000

    def _mac(self, key: bytes, payload: bytes) -> str:
        digest = hmac.digest(key, _CONTEXT + payload, "sha256")
        return base64.urlsafe_b64encode(digest)[:_SIG_LENGTH].decode("ascii")

    def sign(self, session_id: str, issued: int) -> str:
        payload = f"{session_id}.{issued:x}"
        return f"{payload}.{self._mac(self._keys[0], payload.encode('ascii'))}"

    def unsign(self, value: str) -> tuple[str, int, bool, str] | None:
        """``(id, issued, signed_by_the_first_key, store_key(id))`` from a cookie value, or None if not ours, intact."""
        verified = self._verified.get(value)
        if verified is not None:
            return verified
        if len(value) > _MAX_COOKIE or not value.isascii():
            return None
        payload, _, signature = value.rpartition(".")
        session_id, _, issued = payload.partition(".")
        if len(session_id) != _ID_LENGTH or len(signature) != _SIG_LENGTH or not issued:
            return None
        raw = payload.encode("ascii")
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(self._mac(key, raw), signature):
                try:
                    verified = (session_id, int(issued, 16), index == 0, store_key(session_id))
                except ValueError:  # signed by us, so unreachable short of a leaked key
                    return None
                self._remember(value, verified)
                return verified
        return None

    def _remember(self, value: str, verified: tuple[str, int, bool, str]) -> None:
        cache = self._verified
        if len(cache) >= self.cache_size:
            # Drop the oldest entry; another thread may have just done the same.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del cache[next(iter(cache))]
        cache[value] = verified
