"""Cycles of sessions that all expire: the memory store ends empty each time, and its memory does not grow.

The suite runs small cycles; ``benchmarks/soak_expiry_cycles.py`` runs big ones.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from live_session import Store

from .test_expiry import clocked_store

pytestmark = pytest.mark.anyio


async def test_memory_store_ends_empty_and_does_not_grow() -> None:
    store, clock = clocked_store(clean_interval=1)
    sizes = []
    tracemalloc.start()
    try:
        for cycle in range(6):
            for n in range(2_000):
                await store.commit(f"c{cycle}-{n}", {"user": str(n), "cart": "[1, 2, 3]"}, (), ttl=10, create=True)
            clock.now += 11
            assert store.sweep() == 2_000
            assert len(store) == 0 and not store._buckets
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # After the first cycles have warmed every structure up, the cycles leave no more behind.
    assert max(sizes[2:]) - min(sizes[2:]) < 64 * 1024, sizes


async def test_on_every_store_nothing_remains_after_the_ttl(store: Store) -> None:
    keys = [f"k{n}" for n in range(50)]
    for key in keys:
        await store.commit(key, {"a": "1"}, (), ttl=0.2, create=True)
    async with store.subscribe(keys[-1]) as updates:
        await anext(updates)
        assert (await asyncio.wait_for(anext(updates), 5)).reason == "expired"
    for key in keys:
        assert await store.load(key) is None
