"""The store contract, run against every store (the `store` fixture is parametrised by backend)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from live_session import SessionConflict, SessionNotFound, SessionTooLarge, SessionUpdate, Store
from live_session._values import decode_all

pytestmark = pytest.mark.anyio

TTL = 60.0


async def next_update(updates: object, timeout: float = 5) -> SessionUpdate:
    return await asyncio.wait_for(anext(updates), timeout)  # type: ignore[call-overload]


async def test_create_load_commit_versions(store: Store) -> None:
    assert await store.load("k") is None
    created = await store.commit("k", {"a": "1"}, (), ttl=TTL, create=True)
    assert created is not None and dict(created.data) == {"a": "1"} and created.version == 1
    updated = await store.commit("k", {"b": '"x"'}, ["a"], ttl=TTL)
    assert updated is not None and dict(updated.data) == {"b": '"x"'} and updated.version == 2
    loaded = await store.load("k", ttl=TTL)
    assert loaded is not None and loaded == updated


async def test_records_handed_out_never_change(store: Store) -> None:
    created = await store.commit("k", {"a": "1", "b": "2"}, (), ttl=TTL, create=True)
    loaded = await store.load("k", ttl=TTL)
    assert created is not None and loaded is not None
    await store.commit("k", {"a": "10", "c": "3"}, ["b"], ttl=TTL)
    same = await store.commit("k", {"a": "10"}, (), ttl=TTL)  # no effect
    await store.regenerate("k", "k2", ttl=TTL)
    await store.commit("k2", {}, ["a", "c"], ttl=TTL, drop_if_empty=True)
    for record in (created, loaded):
        assert dict(record.data) == {"a": "1", "b": "2"} and record.version == 1
    assert same is not None and dict(same.data) == {"a": "10", "c": "3"} and same.version == 2


async def test_a_commit_returns_the_stored_session_whatever_base_it_is_given(store: Store) -> None:
    """``base`` only spares a read-back: a stale one never makes the returned record wrong."""
    created = await store.commit("k", {"a": "1", "b": "2"}, (), ttl=TTL, create=True)
    assert created is not None
    fresh = await store.commit("k", {"a": "3"}, ["b"], ttl=TTL, base=created)
    assert fresh is not None and dict(fresh.data) == {"a": "3"} and fresh.version == 2
    await store.commit("k", {"c": "4"}, (), ttl=TTL)  # another writer, unseen by the next one
    stale = await store.commit("k", {"a": "5"}, (), ttl=TTL, base=fresh)
    assert stale is not None and dict(stale.data) == {"a": "5", "c": "4"} and stale.version == 4
    unchanged = await store.commit("k", {"a": "5"}, (), ttl=TTL, base=fresh)  # no effect, stale base
    assert unchanged is not None and dict(unchanged.data) == {"a": "5", "c": "4"} and unchanged.version == 4
    assert await store.load("k") == stale


async def test_a_commit_of_thousands_of_keys(store: Store) -> None:
    """Past what one Lua unpack() takes (about 8,000 values): set, then removed, in single commits."""
    names = [f"k{i}" for i in range(5000)]
    created = await store.commit("k", dict.fromkeys(names, "1"), (), ttl=TTL, create=True)
    assert created is not None and len(created.data) == 5000
    emptied = await store.commit("k", {"last": "2"}, names, ttl=TTL, base=created)
    assert emptied is not None and dict(emptied.data) == {"last": "2"}
    assert await store.load("k") == emptied


async def test_commit_never_resurrects(store: Store) -> None:
    assert await store.commit("gone", {"a": "1"}, (), ttl=TTL) is None
    await store.commit("k", {"a": "1"}, (), ttl=TTL, create=True)
    assert await store.destroy("k") is True
    assert await store.destroy("k") is False
    assert await store.commit("k", {"a": "2"}, (), ttl=TTL) is None
    assert await store.load("k") is None


async def test_commit_without_effect_keeps_the_version(store: Store) -> None:
    await store.commit("k", {"a": "1"}, (), ttl=TTL, create=True)
    same = await store.commit("k", {"a": "1"}, ["missing"], ttl=TTL)
    assert same is not None and same.version == 1


async def test_keys_not_named_are_left_alone(store: Store) -> None:
    await store.commit("k", {"a": "1", "b": "2"}, (), ttl=TTL, create=True)
    await store.commit("k", {"a": "10"}, (), ttl=TTL)
    await store.commit("k", {}, ["b"], ttl=TTL)
    await store.commit("k", {"c": "3"}, (), ttl=TTL)
    record = await store.load("k")
    assert record is not None and dict(record.data) == {"a": "10", "c": "3"} and record.version == 4


async def test_expected_version_is_compare_and_set(store: Store) -> None:
    await store.commit("k", {"n": "0"}, (), ttl=TTL, create=True)
    with pytest.raises(SessionConflict):
        await store.commit("k", {"n": "1"}, (), ttl=TTL, expected_version=7)
    record = await store.commit("k", {"n": "1"}, (), ttl=TTL, expected_version=1)
    assert record is not None and record.version == 2


async def test_drop_if_empty_deletes_and_tells_subscribers(store: Store) -> None:
    await store.commit("k", {"a": "1"}, (), ttl=TTL, create=True)
    async with store.subscribe("k") as updates:
        assert (await next_update(updates)).reason == "snapshot"
        record = await store.commit("k", {}, ["a"], ttl=TTL, drop_if_empty=True)
        assert record is not None and not record.data
        update = await next_update(updates)
        assert update.reason == "destroyed" and update.removed == {"a"} and update.session == {}
        with pytest.raises(StopAsyncIteration):
            await next_update(updates)
    assert await store.load("k") is None


async def test_too_large_stores_nothing(store: Store) -> None:
    limit = store.max_session_size  # type: ignore[attr-defined]
    await store.commit("k", {"a": "1"}, (), ttl=TTL, create=True)
    with pytest.raises(SessionTooLarge):
        await store.commit("k", {"big": '"' + "x" * limit + '"'}, ["a"], ttl=TTL)
    record = await store.load("k")
    assert record is not None and dict(record.data) == {"a": "1"} and record.version == 1


async def test_regenerate_moves_data_and_ends_old_subscriptions(store: Store) -> None:
    await store.commit("old", {"user": '"ada"'}, (), ttl=TTL, create=True)
    async with store.subscribe("old") as updates:
        await next_update(updates)
        moved = await store.regenerate("old", "new", ttl=TTL)
        assert moved is not None and dict(moved.data) == {"user": '"ada"'} and moved.version == 2
        update = await next_update(updates)
        assert update.reason == "regenerated" and update.version == 2 and update.session == {"user": "ada"}
        with pytest.raises(StopAsyncIteration):
            await next_update(updates)
    assert await store.load("old") is None
    # Nothing published to the old id reaches the new one, or the other way round.
    async with store.subscribe("new") as updates:
        snapshot = await next_update(updates)
        assert snapshot.session == {"user": "ada"} and snapshot.version == 2
    assert await store.regenerate("old", "newer", ttl=TTL) is None


async def test_subscribe_snapshot_then_ordered_updates(store: Store) -> None:
    await store.commit("k", {"n": "0"}, (), ttl=TTL, create=True)
    async with store.subscribe("k") as updates:
        snapshot = await next_update(updates)
        assert snapshot.reason == "snapshot" and snapshot.session == {"n": 0} and snapshot.changed == {"n"}
        for n in range(1, 6):
            await store.commit("k", {"n": str(n)}, (), ttl=TTL)
        versions = []
        for n in range(1, 6):
            update = await next_update(updates)
            assert update.session == {"n": n} and update.changed == {"n"} and update.reason == "updated"
            versions.append(update.version)
        assert versions == sorted(versions) and len(set(versions)) == 5 and versions[0] > snapshot.version


async def test_subscribe_to_missing_session(store: Store) -> None:
    with pytest.raises(SessionNotFound):
        async with store.subscribe("missing"):
            pass


async def test_slow_subscriber_skips_to_the_newest_state(store: Store) -> None:
    await store.commit("k", {"n": "0"}, (), ttl=TTL, create=True)
    async with store.subscribe("k", max_queue=4) as slow, store.subscribe("k") as fast:
        await next_update(slow)
        await next_update(fast)
        for n in range(1, 101):
            await store.commit("k", {"n": str(n), f"k{n % 3}": "1"}, (), ttl=TTL)
        assert len(slow._queue) <= 4  # bounded, whatever the backlog
        seen = [await next_update(slow)]
        while seen[-1].session["n"] != 100:
            seen.append(await next_update(slow))
        assert all(a.version < b.version for a, b in itertools.pairwise(seen))
        assert seen[-1].changed >= {"n"}
        # the fast one is not held back by the slow one
        last = None
        while last is None or last.session["n"] != 100:
            last = await next_update(fast)


async def test_close_ends_subscriptions_and_store_stays_usable(store: Store) -> None:
    await store.commit("k", {"n": "0"}, (), ttl=TTL, create=True)
    subscribed = asyncio.Event()

    async def consume() -> int:
        count = 0
        async with store.subscribe("k") as updates:
            async for _ in updates:
                count += 1
                subscribed.set()
        return count

    task = asyncio.create_task(consume())
    await asyncio.wait_for(subscribed.wait(), 5)
    await store.aclose()
    assert await asyncio.wait_for(task, 5) == 1
    assert await store.commit("k", {"n": "1"}, (), ttl=TTL) is not None


async def test_decoded_values_a_store_keeps_always_match_its_data(store: Store) -> None:
    created = await store.commit("k", {"a": "1", "b": "[1]"}, (), ttl=TTL, create=True)
    assert created is not None
    first = await store.load("k")
    assert first is not None
    store.keep_decoded("k", first, lambda: decode_all(first.data))
    steps: list[tuple[dict[str, str], list[str]]] = [({"a": "2"}, []), ({"c": '{"x":1}'}, ["b"]), ({}, ["a"])]
    for changes, removed in steps:
        record = await store.commit("k", changes, removed, ttl=TTL)
        loaded = await store.load("k")
        for seen in (record, loaded):
            assert seen is not None and seen.decoded in (None, decode_all(seen.data))
