"""MemoryStore's decoded values: handed out with its records, kept within a budget, never changed by an app."""

from __future__ import annotations

from typing import Any

import pytest

from live_session import MemoryStore, Record
from live_session._values import decode_all, encoded_size

pytestmark = pytest.mark.anyio

TTL = 60.0
CART = {"user": "7", "cart": '[{"sku":"a","qty":1}]'}
SIZE = encoded_size(CART)  # the budget one such session takes


def decoded(record: Record | None) -> Any:
    assert record is not None
    return record.decoded


async def test_a_loaded_record_carries_its_values_decoded_and_commits_keep_them_right() -> None:
    store = MemoryStore()
    created = await store.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(created) is None  # nothing decoded until a load asks for it
    loaded = await store.load("k", ttl=TTL)
    assert loaded is not None and loaded.decoded == {"user": 7, "cart": [{"sku": "a", "qty": 1}]}
    assert await store.load("k") is loaded  # decoded once, then handed out as it is

    changed = await store.commit("k", {"user": "8", "new": '{"x":[1]}'}, ["cart"], ttl=TTL, base=loaded)
    assert changed is not None and changed.decoded == decode_all(changed.data) == {"user": 8, "new": {"x": [1]}}
    assert list(changed.decoded) == list(changed.data)  # in the same order
    assert loaded.decoded == {"user": 7, "cart": [{"sku": "a", "qty": 1}]}  # the old record is untouched
    assert changed == Record(changed.data, changed.version)  # decoded values play no part in equality


async def test_decoded_values_are_kept_for_the_newest_sessions_within_the_budget() -> None:
    store = MemoryStore(decoded_cache_size=2 * SIZE)
    for key in ("a", "b", "c"):
        await store.commit(key, CART, (), ttl=TTL, create=True)
        assert decoded(await store.load(key)) is not None
    # Loading c went over the budget: a, the oldest, is no longer kept; a commit shows it.
    assert decoded(await store.commit("a", {"user": "1"}, (), ttl=TTL)) is None
    assert decoded(await store.commit("b", {"user": "1"}, (), ttl=TTL)) == {"user": 1, "cart": [{"sku": "a", "qty": 1}]}
    # A commit that grows a kept session past the budget stops keeping the oldest one.
    big = '"' + "x" * SIZE + '"'
    assert decoded(await store.commit("c", {"cart": big}, (), ttl=TTL)) is not None
    assert decoded(await store.commit("b", {"user": "2"}, (), ttl=TTL)) is None


async def test_no_budget_or_a_session_bigger_than_it_is_never_decoded() -> None:
    off = MemoryStore(decoded_cache_size=0)
    await off.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(await off.load("k")) is None
    small = MemoryStore(decoded_cache_size=SIZE - 1)
    await small.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(await small.load("k")) is None
    with pytest.raises(ValueError, match="decoded_cache_size"):
        MemoryStore(decoded_cache_size=-1)


@pytest.mark.parametrize("end", ["destroy", "expire", "regenerate", "empty"])
async def test_a_session_that_ends_gives_its_budget_back(end: str) -> None:
    store = MemoryStore(decoded_cache_size=SIZE)
    now = [1000.0]
    store._clock = lambda: now[0]
    await store.commit("a", CART, (), ttl=TTL, create=True)
    assert decoded(await store.load("a")) is not None
    if end == "destroy":
        await store.destroy("a")
    elif end == "expire":
        now[0] += 2 * TTL
        assert await store.load("a") is None
    elif end == "regenerate":
        await store.regenerate("a", "a2", ttl=TTL)
        await store.destroy("a2")
    else:
        await store.commit("a", {}, list(CART), ttl=TTL, drop_if_empty=True)
    await store.commit("b", CART, (), ttl=TTL, create=True)
    assert decoded(await store.load("b")) is not None  # the whole budget is free again
    assert decoded(await store.commit("b", {"user": "1"}, (), ttl=TTL)) is not None


async def test_a_commit_of_text_that_is_not_json_to_a_kept_session_is_refused_and_stores_nothing() -> None:
    store = MemoryStore()
    await store.commit("k", CART, (), ttl=TTL, create=True)
    loaded = await store.load("k")
    with pytest.raises(ValueError, match="'user' is not JSON text"):
        await store.commit("k", {"user": "{oops"}, (), ttl=TTL)
    assert await store.load("k") is loaded
