"""The absolute lifetime: a session ends at most N seconds after creation, however active."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from live_session import MemoryStore, Store

from .conftest import make_app
from .test_expiry import clocked_store

pytestmark = pytest.mark.anyio


async def test_use_never_extends_a_session_past_its_lifetime(store: Store) -> None:
    """On every store, in real time: kept busy, it still ends at its deadline, and subscribers hear it."""
    await store.commit("k", {"a": "1"}, (), ttl=60, create=True, lifetime=0.5)
    async with store.subscribe("k") as updates:
        assert (await anext(updates)).reason == "snapshot"
        next_update = asyncio.ensure_future(anext(updates))
        version = 1
        give_up = asyncio.get_running_loop().time() + 5
        while not next_update.done():  # keep using it: loads and writes both extend the idle lifetime
            assert asyncio.get_running_loop().time() < give_up, "still alive 5 s after a 0.5 s lifetime"
            record = await store.load("k", ttl=60)
            if record is None:
                break
            version += 1
            await store.commit("k", {"a": str(version)}, (), ttl=60)
            await asyncio.wait([next_update], timeout=0.02)
        reasons = [(await next_update).reason]
        while reasons[-1] == "updated":
            reasons.append((await asyncio.wait_for(anext(updates), 5)).reason)
        assert reasons[-1] == "expired"
    assert await store.load("k") is None


async def test_regenerating_keeps_the_deadline() -> None:
    store, clock = clocked_store(clean_interval=1)
    await store.commit("old", {"a": "1"}, (), ttl=100, create=True, lifetime=30)
    clock.now += 20
    assert await store.regenerate("old", "new", ttl=100) is not None
    clock.now += 9
    assert await store.load("new", ttl=100) is not None
    clock.now += 2
    assert await store.load("new") is None


async def test_without_a_lifetime_only_idleness_ends_a_session() -> None:
    store, clock = clocked_store(clean_interval=1)
    await store.commit("k", {"a": "1"}, (), ttl=10, create=True)
    for _ in range(100):
        clock.now += 9
        assert await store.load("k", ttl=10) is not None


def test_the_middleware_option_ends_busy_sessions() -> None:
    store, clock = clocked_store(clean_interval=60)
    client = TestClient(make_app(store=store, absolute_timeout=3600, idle_timeout=600))
    client.post("/update_session", json={"user": "ada"})
    for _ in range(11):  # busy: a request every 5 minutes for 55 minutes
        clock.now += 300
        assert client.get("/view_session").json() == {"session": {"user": "ada"}}
    clock.now += 301
    assert client.get("/view_session").json() == {"session": {}}


@pytest.mark.parametrize("option", ["absolute_timeout", "idle_timeout"])
@pytest.mark.parametrize("value", [0, -5, float("inf"), float("nan")])
def test_lifetimes_must_be_positive(option: str, value: float) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=option):
        TestClient(make_app(store=MemoryStore(), **options)).get("/view_session")
