"""The live handle: writes stored at once and broadcast, atomic modify, regenerate and destroy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from live_session import LiveSession, MemoryStore, SessionConflict, SessionError, SessionNotFound, Store

from .conftest import open_live

pytestmark = pytest.mark.anyio


def subscriber_count(store: Store) -> int:
    if isinstance(store, MemoryStore):
        return len(store._hub)
    states = store._states.values()  # type: ignore[attr-defined]
    return sum(len(state.hub) + len(state.watched) for state in states)


Seeded = Callable[..., Awaitable[LiveSession]]


async def test_writes_are_stored_and_broadcast(store: Store, seeded: Seeded) -> None:
    writer = await seeded({"cart": []})
    async with writer.subscribe() as updates:
        snapshot = await anext(updates)
        assert snapshot.session == {"cart": []}
        await writer.put("cart", ["apple"])
        await writer.update({"user": "ada"}, theme="dark")
        await writer.delete("theme", "never-there")
        expected: list[tuple[dict[str, Any], frozenset[str], frozenset[str]]] = [
            ({"cart": ["apple"]}, frozenset({"cart"}), frozenset()),
            ({"cart": ["apple"], "user": "ada", "theme": "dark"}, frozenset({"user", "theme"}), frozenset()),
            ({"cart": ["apple"], "user": "ada"}, frozenset(), frozenset({"theme"})),
        ]
        for session, changed, removed in expected:
            update = await asyncio.wait_for(anext(updates), 5)
            assert (update.session, update.changed, update.removed) == (session, changed, removed)
    assert dict(writer.data) == {"cart": ["apple"], "user": "ada"}
    assert writer.version == snapshot.version + 3


async def test_two_connections_see_each_other(store: Store) -> None:
    from live_session.testing import seed_session

    from .conftest import SECRET

    cookie = await seed_session(store, {"n": 0}, secret_key=SECRET)
    tab_a = await open_live({"store": store}, cookie)
    tab_b = await open_live({"store": store}, cookie)
    async with tab_b.subscribe() as updates:
        await anext(updates)
        await tab_a.put("n", 1)
        assert (await asyncio.wait_for(anext(updates), 5)).session == {"n": 1}
    assert await tab_b.refresh() == {"n": 1}


async def test_data_is_read_only(seeded: Seeded) -> None:
    live = await seeded({"a": 1})
    with pytest.raises(TypeError):
        live.data["a"] = 2  # type: ignore[index]


async def test_bad_values_raise_naming_the_key_and_store_nothing(seeded: Seeded) -> None:
    live = await seeded({"a": 1})
    for bad in ({1, 2}, (1, 2), float("nan"), {"x": object()}, {3: "int key"}, b"bytes"):
        with pytest.raises(TypeError, match="'bad'"):
            await live.put("bad", bad)
        with pytest.raises(TypeError, match="'bad'"):
            await live.update({"ok": 1, "bad": bad})
    with pytest.raises(TypeError, match="keys must be str"):
        await live.put(3, "x")  # type: ignore[arg-type]
    assert await live.refresh() == {"a": 1}


async def test_cyclic_value_is_refused() -> None:
    from live_session._values import check_value

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="nested more than"):
        check_value("loop", cyclic)


async def test_modify_is_atomic_under_contention(seeded: Seeded) -> None:
    live = await seeded({"count": 0})

    def add_one(data: dict[str, Any]) -> None:
        data["count"] += 1

    results = await asyncio.gather(*(live.modify(add_one) for _ in range(100)))
    assert sorted(result["count"] for result in results) == list(range(1, 101))
    assert await live.refresh() == {"count": 100}


async def test_modify_retries_a_conflict_and_runs_fn_again(store: Store, seeded: Seeded) -> None:
    live = await seeded({"count": 0})
    calls = 0

    def add_one_while_someone_else_writes(data: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        data["count"] += 1

    real_load = store.load
    interfered = False

    async def load_then_interfere(key: str, *, ttl: float | None = None) -> Any:
        nonlocal interfered
        record = await real_load(key, ttl=ttl)
        if not interfered:
            interfered = True
            await store.commit(key, {"count": "10"}, (), ttl=60)  # another process wins the race
        return record

    store.load = load_then_interfere  # type: ignore[method-assign]
    try:
        result = await live.modify(add_one_while_someone_else_writes)
    finally:
        store.load = real_load  # type: ignore[method-assign]
    assert result == {"count": 11} and calls == 2


async def test_modify_gives_up_with_session_conflict(store: Store, seeded: Seeded) -> None:
    live = await seeded({"count": 0})
    live.max_attempts = 3
    real_load = store.load

    async def always_stale(key: str, *, ttl: float | None = None) -> Any:
        record = await real_load(key, ttl=ttl)
        assert record is not None
        await store.commit(key, {"count": str(record.version + 100)}, (), ttl=60)
        return record

    store.load = always_stale  # type: ignore[method-assign]
    try:
        with pytest.raises(SessionConflict):
            await live.modify(lambda data: data.update(count=-1))
    finally:
        store.load = real_load  # type: ignore[method-assign]


async def test_clear_keeps_the_id(seeded: Seeded) -> None:
    live = await seeded({"a": 1, "b": 2})
    await live.clear()
    assert dict(live.data) == {}
    await live.put("c", 3)
    assert await live.refresh() == {"c": 3}


async def test_destroy_tells_subscribers_and_ends_the_session(seeded: Seeded) -> None:
    live = await seeded({"user": "ada"})
    async with live.subscribe() as updates:
        await anext(updates)
        await live.destroy()
        update = await asyncio.wait_for(anext(updates), 5)
        assert update.reason == "destroyed" and update.session == {} and update.removed == {"user"}
        with pytest.raises(StopAsyncIteration):
            await anext(updates)
    with pytest.raises(SessionNotFound):
        await live.put("user", "mallory")


async def test_writes_to_a_vanished_session_raise(store: Store) -> None:
    from live_session.testing import seed_session

    from .conftest import SECRET

    cookie = await seed_session(store, {"a": 1}, secret_key=SECRET)
    tab_a = await open_live({"store": store}, cookie)
    tab_b = await open_live({"store": store}, cookie)
    await tab_a.destroy()
    for write in (tab_b.put("a", 2), tab_b.delete("a"), tab_b.modify(dict.clear), tab_b.refresh()):
        with pytest.raises(SessionNotFound, match="no longer exists"):
            await write


async def test_no_session_is_a_clear_error(store: Store) -> None:
    live = await open_live({"store": store}, None)
    assert not live.exists
    with pytest.raises(SessionNotFound, match="ensure_session"):
        await live.put("a", 1)
    with pytest.raises(SessionNotFound, match="ensure_session"):
        live.subscribe()


async def test_regenerate_on_a_websocket_is_refused(seeded: Seeded) -> None:
    live = await seeded({"a": 1})
    with pytest.raises(SessionError, match="WebSocket cannot"):
        await live.regenerate()


async def test_subscriptions_do_not_leak(store: Store, seeded: Seeded) -> None:
    live = await seeded({"a": 1})
    for _ in range(1000):
        async with live.subscribe() as updates:
            await anext(updates)
    assert subscriber_count(store) == 0
    from live_session._live import _modify_locks

    await asyncio.gather(*(live.modify(lambda d: None) for _ in range(10)))
    assert len(_modify_locks) == 0
