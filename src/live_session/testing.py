"""Helpers for testing apps that use live-session."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import Secret

from ._ids import CookieSigner
from ._live import create_session
from ._middleware import _FOURTEEN_DAYS, _secret_keys
from ._store import Store

__all__ = ["seed_session"]


async def seed_session(
    store: Store,
    data: Mapping[str, Any],
    *,
    secret_key: str | Secret | Sequence[str | Secret],
    ttl: float = _FOURTEEN_DAYS,
    lifetime: float | None = None,
) -> str:
    """Store a new session holding ``data`` and return the cookie value that carries it.

    ``ttl`` and ``lifetime`` are its idle and absolute lifetimes in seconds::

    cookie = await seed_session(store, {"user": "ada"}, secret_key=KEY)
    client.cookies.set("session", cookie)
    """
    session_id, _ = await create_session(store, data, ttl, lifetime)
    return CookieSigner(_secret_keys(secret_key)).sign(session_id, int(time.time()))
