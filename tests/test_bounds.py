"""The memory store is bounded, and traffic that never writes a session stores nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.types import Message

from live_session import MemoryStore

from .conftest import make_app
from .test_expiry import clocked_store

pytestmark = pytest.mark.anyio


async def request(app: Any, path: str, method: str = "GET", body: bytes = b"") -> list[Message]:
    """One raw ASGI request without a cookie (fast enough to send ten thousand)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


async def test_the_longest_idle_session_is_evicted_and_told() -> None:
    store, clock = clocked_store(clean_interval=1, max_sessions=3)
    for key in ("a", "b", "c"):
        await store.commit(key, {"n": "1"}, (), ttl=100, create=True)
        clock.now += 10
    assert await store.load("a", ttl=100) is not None  # a was used again: b is now the longest idle
    async with store.subscribe("b") as updates:
        await anext(updates)
        await store.commit("d", {"n": "1"}, (), ttl=100, create=True)
        update = await asyncio.wait_for(anext(updates), 5)
        assert update.reason == "evicted" and update.terminal
    assert len(store) == 3
    assert await store.load("b") is None
    assert all([await store.load(key) for key in ("a", "c", "d")])


async def test_expired_sessions_make_room_before_anything_is_evicted() -> None:
    store, clock = clocked_store(clean_interval=1, max_sessions=2)
    await store.commit("short", {"n": "1"}, (), ttl=5, create=True)
    await store.commit("long", {"n": "1"}, (), ttl=100, create=True)
    clock.now += 10
    await store.commit("new", {"n": "1"}, (), ttl=100, create=True)
    assert await store.load("long") is not None and len(store) == 2


async def test_a_flood_of_new_sessions_never_exceeds_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(max_sessions=100)
    app = make_app(store=store)
    with caplog.at_level(logging.WARNING, logger="live_session"):
        for n in range(2_000):
            sent = await request(app, "/update_session", "POST", b'{"n": %d}' % n)
            assert sent[0]["status"] == 200
            assert len(store) <= 100
    assert len(store) == 100
    warnings = [record for record in caplog.records if "max_sessions=100" in record.getMessage()]
    assert len(warnings) == 1  # one line, not one per eviction


async def test_ten_thousand_cookieless_requests_store_nothing() -> None:
    store = MemoryStore()
    app = make_app(store=store)
    for path in ("/view_session", "/no_session") * 5_000:
        sent = await request(app, path)
        assert sent[0]["status"] == 200
        assert not any(name == b"set-cookie" for name, _ in sent[0]["headers"])
    assert len(store) == 0


def test_max_sessions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        MemoryStore(max_sessions=0)
