"""Idle expiry: never read back, swept in the background, subscribers told."""

from __future__ import annotations

import asyncio

import pytest

from live_session import MemoryStore

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clocked_store(**options: float) -> tuple[MemoryStore, Clock]:
    store = MemoryStore(**options)  # type: ignore[arg-type]
    clock = Clock()
    store._clock = clock
    return store, clock


async def test_expired_session_is_never_read_even_before_a_sweep() -> None:
    store, clock = clocked_store(clean_interval=3600)
    await store.commit("k", {"a": "1"}, (), ttl=10, create=True)
    clock.now += 9
    assert await store.load("k") is not None
    clock.now += 2
    assert await store.load("k") is None
    assert await store.commit("k", {"a": "2"}, (), ttl=10) is None


async def test_reads_and_writes_extend_the_lifetime_subscriptions_do_not() -> None:
    store, clock = clocked_store(clean_interval=1)
    await store.commit("k", {"a": "1"}, (), ttl=10, create=True)
    for _ in range(5):
        clock.now += 8
        assert await store.load("k", ttl=10) is not None
    clock.now += 8
    assert await store.commit("k", {"a": "2"}, (), ttl=10) is not None
    async with store.subscribe("k") as updates:
        await anext(updates)
        clock.now += 11
        assert store.sweep() == 1
        update = await asyncio.wait_for(anext(updates), 5)
        assert update.reason == "expired" and update.session == {} and update.removed == {"a"}
    assert len(store) == 0


async def test_extending_is_not_a_change() -> None:
    store, clock = clocked_store()
    await store.commit("k", {"a": "1"}, (), ttl=10, create=True)
    async with store.subscribe("k") as updates:
        snapshot = await anext(updates)
        for _ in range(3):
            clock.now += 1
            record = await store.load("k", ttl=10)
            assert record is not None and record.version == snapshot.version
        await store.commit("k", {"a": "2"}, (), ttl=10)
        assert (await asyncio.wait_for(anext(updates), 5)).version == snapshot.version + 1


async def test_sweep_removes_only_what_expired() -> None:
    store, clock = clocked_store(clean_interval=1)
    for n in range(1000):
        await store.commit(f"short{n}", {"n": str(n)}, (), ttl=5, create=True)
        await store.commit(f"long{n}", {"n": str(n)}, (), ttl=500, create=True)
    clock.now += 4
    assert store.sweep() == 0
    clock.now += 3
    assert store.sweep() == 1000
    assert len(store) == 1000
    assert store.sweep() == 0
    clock.now += 500
    assert store.sweep() == 1000
    assert len(store) == 0 and not any(store._buckets.values())


async def test_background_sweeper_tells_subscribers() -> None:
    store = MemoryStore(clean_interval=0.02)
    await store.commit("k", {"a": "1"}, (), ttl=0.05, create=True)
    async with store.subscribe("k") as updates:
        assert (await anext(updates)).reason == "snapshot"
        update = await asyncio.wait_for(anext(updates), 5)
        assert update.reason == "expired"
    assert len(store) == 0
    await store.aclose()
    assert store._sweeper is None


async def test_a_failing_sweep_does_not_kill_the_sweeper(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(clean_interval=0.01)
    failures = asyncio.Event()
    real_sweep = store.sweep

    def flaky() -> int:
        if not failures.is_set():
            failures.set()
            raise RuntimeError("boom")
        return real_sweep()

    store.sweep = flaky  # type: ignore[method-assign]
    await store.commit("k", {"a": "1"}, (), ttl=0.03, create=True)
    async with store.subscribe("k") as updates:
        await anext(updates)
        assert (await asyncio.wait_for(anext(updates), 5)).reason == "expired"
    assert failures.is_set() and "memory store sweep failed" in caplog.text
    await store.aclose()


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="clean_interval"):
        MemoryStore(clean_interval=0)
    with pytest.raises(ValueError, match="max_session_size"):
        MemoryStore(max_session_size=0)


async def test_a_session_in_use_stays_filed_no_later_than_its_expiry() -> None:
    # load() and commit() leave a session in its bucket when they extend it; the sweep that
    # reaches that bucket files it again. It must never sit in a bucket later than its expiry's.
    store, clock = clocked_store(clean_interval=10)
    await store.commit("k", {"a": "1"}, (), ttl=25, create=True, lifetime=100)

    def filed() -> list[int]:
        return [bucket for bucket, keys in store._buckets.items() if "k" in keys]

    expires_at = 1000.0 + 25
    for step, action in enumerate(["load", "commit", "same", "sweep", "load", "commit", "sweep", "load", "load"]):
        clock.now += 3 + step
        if action != "sweep":
            expires_at = min(clock.now + 25, 1000.0 + 100)
        if action == "load":
            await store.load("k", ttl=25)
        elif action == "sweep":
            assert store.sweep() == 0
        else:
            await store.commit("k", {"a": "1" if action == "same" else str(step)}, (), ttl=25)
        entry = store._entries["k"]
        assert entry.expires_at == expires_at
        assert filed() == [entry.bucket]
        assert entry.bucket <= -(-expires_at // 10)
        if entry.bucket * 10 <= clock.now:  # its bucket is due: a sweep files it again, later
            assert store.sweep() == 0
            assert filed() == [entry.bucket] == [-(-expires_at // 10)]
    bucket = -(-expires_at // 10)
    clock.now = expires_at - 0.5  # every bucket before its expiry's is swept: it stays
    assert store.sweep() == 0 and filed() == [bucket]
    clock.now = bucket * 10  # its expiry's bucket is due (sweeps run every clean_interval)
    assert store.sweep() == 1 and len(store) == 0


async def test_a_shorter_lifetime_files_the_session_earlier_at_once() -> None:
    store, clock = clocked_store(clean_interval=10)
    await store.commit("k", {"a": "1"}, (), ttl=100, create=True)
    assert store._entries["k"].bucket == 110
    await store.load("k", ttl=5)  # another app on the same store, with a shorter idle timeout
    assert store._entries["k"].bucket == 101
    async with store.subscribe("k") as updates:
        await anext(updates)
        clock.now += 10
        assert store.sweep() == 1
        update = await asyncio.wait_for(anext(updates), 5)
        assert update.reason == "expired"
