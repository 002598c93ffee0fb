"""Decoded values kept with MemoryStore's records: offered by the middleware, kept within a budget, never changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from live_session import MemoryStore, Record
from live_session._ids import store_key
from live_session._values import decode_all, encoded_size

from .conftest import BASIC_ROUTES, make_app

pytestmark = pytest.mark.anyio

TTL = 60.0
CART = {"user": "7", "cart": '[{"sku":"a","qty":1}]'}
SIZE = encoded_size(CART)  # the budget one such session takes


def decoded(record: Record | None) -> Any:
    assert record is not None
    return record.decoded


async def kept(store: MemoryStore, key: str) -> Record:
    """Load ``key`` and hand its values back decoded, as the middleware does after a request."""
    record = await store.load(key)
    assert record is not None
    store.keep_decoded(key, record, lambda: decode_all(record.data))
    return await store.load(key)  # type: ignore[return-value]


async def test_kept_values_are_handed_out_and_commits_keep_them_right() -> None:
    store = MemoryStore()
    created = await store.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(created) is None and decoded(await store.load("k")) is None  # nothing until offered
    loaded = await kept(store, "k")
    assert loaded.decoded == {"user": 7, "cart": [{"sku": "a", "qty": 1}]} and loaded == created
    assert await store.load("k") is loaded

    changed = await store.commit("k", {"user": "8", "new": '{"x":[1]}'}, ["cart"], ttl=TTL, base=loaded)
    assert changed is not None and changed.decoded == decode_all(changed.data) == {"user": 8, "new": {"x": [1]}}
    assert list(changed.decoded) == list(changed.data)  # in the same order
    assert loaded.decoded == {"user": 7, "cart": [{"sku": "a", "qty": 1}]}  # the old record is untouched
    assert changed == Record(changed.data, changed.version)  # decoded values play no part in equality


async def test_values_offered_for_a_record_that_is_no_longer_current_are_not_kept() -> None:
    store = MemoryStore()
    old = await store.commit("k", CART, (), ttl=TTL, create=True)
    assert old is not None
    await store.commit("k", {"user": "8"}, (), ttl=TTL)
    store.keep_decoded("k", old, lambda: decode_all(old.data))
    store.keep_decoded("gone", old, lambda: decode_all(old.data))
    assert decoded(await store.load("k")) is None and await store.load("gone") is None


async def test_values_are_kept_while_they_fit_and_given_back_when_unused() -> None:
    store = MemoryStore(decoded_cache_size=2 * SIZE)
    for key in ("a", "b", "c"):
        await store.commit(key, CART, (), ttl=TTL, create=True)
    assert decoded(await kept(store, "a")) is not None and decoded(await kept(store, "b")) is not None
    assert decoded(await kept(store, "c")) is None  # no room, and nothing is evicted to make some
    store.sweep()
    await store.load("a")
    store.sweep()  # b was not loaded since the last sweep: its room is given back
    assert decoded(await store.load("a")) is not None and decoded(await store.load("b")) is None
    assert decoded(await kept(store, "c")) is not None
    assert decoded(await store.commit("c", {"user": "1"}, (), ttl=TTL)) == {"user": 1, "cart": [{"sku": "a", "qty": 1}]}
    # A commit that grows a kept session past the budget stops keeping that one only.
    big = '"' + "x" * SIZE + '"'
    assert decoded(await store.commit("c", {"cart": big}, (), ttl=TTL)) is None
    assert decoded(await store.commit("a", {"user": "2"}, (), ttl=TTL)) is not None


async def test_no_budget_or_a_session_bigger_than_it_is_never_kept() -> None:
    off = MemoryStore(decoded_cache_size=0)
    await off.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(await kept(off, "k")) is None
    small = MemoryStore(decoded_cache_size=SIZE - 1)
    await small.commit("k", CART, (), ttl=TTL, create=True)
    assert decoded(await kept(small, "k")) is None
    with pytest.raises(ValueError, match="decoded_cache_size"):
        MemoryStore(decoded_cache_size=-1)


@pytest.mark.parametrize("end", ["destroy", "expire", "regenerate", "empty"])
async def test_a_session_that_ends_gives_its_budget_back(end: str) -> None:
    store = MemoryStore(decoded_cache_size=SIZE)
    now = [1000.0]
    store._clock = lambda: now[0]
    await store.commit("a", CART, (), ttl=TTL, create=True)
    assert decoded(await kept(store, "a")) is not None
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
    assert decoded(await kept(store, "b")) is not None  # the whole budget is free again
    assert decoded(await store.commit("b", {"user": "1"}, (), ttl=TTL)) is not None


async def test_text_that_is_not_json_is_stored_as_before_and_stops_the_keeping() -> None:
    """The store contract asks for JSON text; a caller that breaks it gets what it stored, kept or not."""
    store = MemoryStore()
    await store.commit("k", CART, (), ttl=TTL, create=True)
    await kept(store, "k")
    changed = await store.commit("k", {"user": "{oops"}, (), ttl=TTL)
    assert changed is not None and changed.data["user"] == "{oops" and changed.decoded is None
    assert await store.load("k") == changed


ROUTES: dict[str, tuple[Callable[[Any], Any], bool]] = {  # what the route does, whether values are offered
    "reads a scalar": (lambda s: s["user"], True),
    "changes a scalar": (lambda s: s.__setitem__("user", s["user"] + 1), True),
    "pops the cart": (lambda s: s.pop("cart"), True),  # what is left is untouched
    "reads the cart": (lambda s: s["cart"], False),
    "sets the cart": (lambda s: s.__setitem__("cart", []), False),
    "puts the popped cart back": (lambda s: s.__setitem__("cart", s.pop("cart")), False),
    "reads everything": (lambda s: dict(s.items()), False),
}


@pytest.mark.parametrize("route", ROUTES)
def test_the_middleware_offers_the_values_only_when_the_app_got_no_list_or_dict(route: str) -> None:
    action, offered = ROUTES[route]

    async def endpoint(request: Request) -> JSONResponse:
        action(request.session)
        return JSONResponse({})

    store = MemoryStore()
    client = TestClient(make_app([*BASIC_ROUTES, Route("/go", endpoint)], store=store))
    client.post("/update_session", json={"user": 1, "cart": [{"sku": "a"}]})
    key = store_key(client.cookies["session"].split(".")[0])
    client.get("/go")
    record = store._entries[key].record  # what the next load hands out
    assert (record.decoded is not None) is offered
    if offered:
        assert record.decoded == decode_all(record.data)


async def test_regenerating_onto_a_kept_key_keeps_the_books_right() -> None:
    """Only a store used directly can reuse a key (ids are random), but its budget must stay right."""
    store = MemoryStore(decoded_cache_size=SIZE)
    await store.commit("a", CART, (), ttl=TTL, create=True)
    await store.commit("b", CART, (), ttl=TTL, create=True)
    assert decoded(await kept(store, "b")) is not None
    await store.regenerate("a", "b", ttl=TTL)
    await store.destroy("b")
    store.sweep()
    await store.commit("c", CART, (), ttl=TTL, create=True)
    assert decoded(await kept(store, "c")) is not None


def test_a_write_after_the_commit_is_neither_stored_nor_served_to_the_next_request() -> None:
    """A background task that sets a key again after the response started: the write is lost, as documented."""

    async def go(request: Request) -> JSONResponse:
        request.session["n"] = 2  # committed as the response starts

        def later() -> None:
            request.session["n"] = 3  # after the response: never stored

        return JSONResponse({}, background=BackgroundTask(later))

    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"n": request.session["n"]})

    store = MemoryStore()
    client = TestClient(make_app([*BASIC_ROUTES, Route("/go", go), Route("/show", show)], store=store))
    client.post("/update_session", json={"n": 1})
    client.get("/go")
    assert client.get("/show").json() == {"n": 2}
    assert client.get("/show").json() == {"n": 2}  # and again, from values kept by the request before


def test_a_session_held_past_its_request_never_hands_out_the_kept_values() -> None:
    held: dict[str, Any] = {}

    async def go(request: Request) -> JSONResponse:
        held["session"] = request.session  # as a task the app leaves running would
        return JSONResponse({"n": request.session["n"]})

    store = MemoryStore()
    client = TestClient(make_app([*BASIC_ROUTES, Route("/go", go)], store=store))
    client.post("/update_session", json={"n": 1, "cart": [{"sku": "a"}]})
    client.get("/go")
    key = store_key(client.cookies["session"].split(".")[0])
    assert store._entries[key].record.decoded is not None  # kept: the app got no list or dict
    held["session"]["cart"].append("leak")
    record = store._entries[key].record
    assert record.decoded == decode_all(record.data) == {"n": 1, "cart": [{"sku": "a"}]}
