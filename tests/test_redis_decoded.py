"""Decoded values kept by RedisStore: handed out only with the very text they came from, within a budget."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message

from live_session import Record, RedisStore, Session, live_session
from live_session._decoded import DecodedCache
from live_session._ids import store_key
from live_session._values import decode_all, encoded_size

from .conftest import BASIC_ROUTES, make_app

TTL = 60.0
CART = {"user": "7", "cart": '[{"sku":"a","qty":1}]'}
SIZE = encoded_size(CART)


def values_of(data: dict[str, str]) -> Any:
    return lambda: decode_all(data)


# -- the cache itself --


def test_values_are_handed_out_only_for_the_text_they_were_decoded_from() -> None:
    cache = DecodedCache(10 * SIZE)
    cache.put("k", CART, values_of(CART))
    assert cache.get("k", dict(CART)) == decode_all(CART)
    assert cache.get("k", {**CART, "user": "8"}) is None  # changed since: decoded afresh by the caller
    assert cache.get("k", {"user": "7"}) is None  # a key fewer
    assert cache.get("other", CART) is None


def test_the_least_recently_used_session_goes_first_and_the_budget_holds() -> None:
    cache = DecodedCache(2 * SIZE)
    cache.put("a", CART, values_of(CART))
    cache.put("b", CART, values_of(CART))
    assert cache.get("a", CART) is not None  # a is now the most recently used
    cache.put("c", CART, values_of(CART))
    assert cache.get("b", CART) is None and cache.get("a", CART) is not None and cache.get("c", CART) is not None
    cache.put("a", {"user": "1"}, values_of({"user": "1"}))  # replaced: its old size is given back
    assert cache._bytes == SIZE + encoded_size({"user": "1"}) and len(cache) == 2


def test_a_get_racing_a_put_of_the_same_key_keeps_the_new_entry_and_the_byte_count() -> None:
    old, new = {"cart": '["a"]'}, {"cart": '["b"]'}
    cache = DecodedCache(2 * encoded_size(old))
    cache.put("k", old, values_of(old))

    class PutLandsAfterTheRead(dict[str, Any]):
        armed = True

        def get(self, key: str, default: Any = None) -> Any:
            entry = dict.get(self, key, default)
            if self.armed:  # another thread's put() runs between get()'s unlocked read and its lock
                self.armed = False
                cache.put("k", new, values_of(new))
            return entry

    cache._entries = PutLandsAfterTheRead(cache._entries)
    cache.get("k", old)
    assert cache.get("k", new) == {"cart": ["b"]}
    assert cache._bytes == sum(size for _, _, size in cache._entries.values())
    cache.put("x", old, values_of(old))  # with the count adrift, this found nothing left to evict
    assert len(cache) == 2


def test_what_cannot_or_need_not_be_kept_is_not() -> None:
    called: list[str] = []

    def values() -> Any:
        called.append("values")
        return decode_all(CART)

    DecodedCache(SIZE - 1).put("k", CART, values)
    DecodedCache(0).put("k", CART, values)
    assert called == []  # too big for the budget: not even asked for
    cache = DecodedCache(10 * SIZE)
    cache.put("k", CART, values_of(CART))
    cache.put("k", CART, lambda: None)  # the app got hold of a list: nothing kept, and the old entry goes
    assert cache.get("k", CART) is None and cache._bytes == 0
    cache.put("k", CART, values_of(CART))
    cache.discard("k")
    cache.discard("never")
    assert len(cache) == 0 and cache._bytes == 0
    with pytest.raises(ValueError, match="decoded_cache_size"):
        DecodedCache(-1)


# -- RedisStore --


@pytest.mark.anyio
async def test_redis_store_hands_out_kept_values_only_while_the_text_is_the_same(redis_url: str) -> None:
    store, other_process = RedisStore(redis_url), RedisStore(redis_url)
    created = await store.commit("k", CART, (), ttl=TTL, create=True)
    assert created is not None
    first = await store.load("k")
    assert first is not None and first.decoded is None  # nothing until offered
    store.keep_decoded("k", first, values_of(dict(first.data)))
    again = await store.load("k")
    assert again is not None and again.decoded == decode_all(CART) and again == first

    await other_process.commit("k", {"user": "8"}, (), ttl=TTL)  # another process changes it
    changed = await store.load("k")
    assert changed is not None and changed.decoded is None and changed.data["user"] == "8"

    store.keep_decoded("k", changed, values_of(dict(changed.data)))
    assert await store.destroy("k")
    assert await store.load("k") is None and len(store._decoded) == 0
    for each in (store, other_process):
        await each.aclose()


@pytest.mark.anyio
async def test_redis_store_with_no_budget_keeps_nothing(redis_url: str) -> None:
    store = RedisStore(redis_url, decoded_cache_size=0)
    await store.commit("k", CART, (), ttl=TTL, create=True)
    record = await store.load("k")
    assert record is not None
    store.keep_decoded("k", record, values_of(dict(record.data)))
    assert (await store.load("k")) == record and record.decoded is None and len(store._decoded) == 0
    with pytest.raises(ValueError, match="decoded_cache_size"):
        RedisStore(redis_url, decoded_cache_size=-1)
    await store.aclose()


def test_requests_on_redis_decode_nothing_the_store_kept_and_a_write_keeps_it_current(redis_url: str) -> None:
    seen: list[bool] = []

    async def visit(request: Request) -> JSONResponse:
        session: Session = request.scope["session"]
        seen.append(bool(session._shared))  # built from kept values: nothing was decoded
        request.session["visits"] = request.session.get("visits", 0) + 1
        return JSONResponse({"user": request.session["user"]})

    store = RedisStore(redis_url)
    client = TestClient(make_app([*BASIC_ROUTES, Route("/visit", visit)], store=store))
    client.post("/update_session", json={"user": 1, "cart": [{"sku": "a"}]})
    key = store_key(client.cookies["session"].split(".")[0])
    for _ in range(4):
        assert client.get("/visit").json() == {"user": 1}
    # The first request decoded and offered; each write after it left the kept values current.
    assert seen == [False, True, True, True]
    data, values, _ = store._decoded._entries[key]
    assert values == decode_all(data) and values["visits"] == 4
    assert client.get("/view_session").json()["session"] == {"user": 1, "cart": [{"sku": "a"}], "visits": 4}


def test_a_record_from_redis_carries_no_values_until_a_request_offers_them(redis_url: str) -> None:
    async def cart(request: Request) -> JSONResponse:
        return JSONResponse(request.session["cart"])  # the app gets the list: nothing is offered

    store = RedisStore(redis_url)
    client = TestClient(make_app([*BASIC_ROUTES, Route("/cart", cart)], store=store))
    client.post("/update_session", json={"cart": [1]})
    assert client.get("/cart").json() == [1]
    assert len(store._decoded) == 0
    assert Record({"a": "1"}, 1, {"a": 1}) == Record({"a": "1"}, 1)  # decoded values play no part in equality


def test_a_session_holding_a_key_its_record_no_longer_has_offers_nothing() -> None:
    loaded = {"a": 1, "cart": ["x"]}
    session = Session(loaded)  # holding the very list loaded holds
    session._baseline = {"a": "1", "cart": '["x"]'}
    assert session._unchanged_values(loaded, {"a": "1", "cart": '["x"]'}) == {"a": 1, "cart": ["x"]}
    # The cart was deleted by a live write while the request ran: the session dict still holds it.
    assert session._unchanged_values(loaded, {"a": "1"}) is None


async def asgi(app: Any, path: str, cookie: str | None = None, body: bytes = b"") -> tuple[str | None, bytes]:
    """One POST straight through ASGI, so that requests can overlap; returns the cookie set and the body."""
    headers = [(b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", f"session={cookie}".encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the request runs to its end
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    set_cookie = None
    for name, value in sent[0].get("headers", []):
        if name == b"set-cookie":
            set_cookie = value.decode().split(";")[0].split("=", 1)[1]
    return set_cookie, b"".join(message.get("body", b"") for message in sent[1:])


@pytest.mark.anyio
async def test_a_list_deleted_while_a_request_ran_never_reaches_the_kept_values(redis_url: str) -> None:
    """Request A's live write deletes the cart its session still holds; a task A left running changes
    that cart; an overlapping request B puts the same text back and offers what it loaded."""
    store = RedisStore(redis_url)
    b_loaded, a_finished, a_task_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def peek(request: Request) -> JSONResponse:
        return JSONResponse(request.session["a"])  # a scalar: the values are offered and kept

    async def request_a(request: Request) -> JSONResponse:
        await live_session(request).delete("cart")

        async def left_running() -> None:
            await a_finished.wait()
            request.session["cart"].append("never stored")
            a_task_done.set()

        tasks.append(asyncio.get_running_loop().create_task(left_running()))
        return JSONResponse("a")

    async def request_b(request: Request) -> JSONResponse:
        b_loaded.set()
        await a_task_done.wait()
        await live_session(request).put("cart", ["x"])  # the text the cart had
        return JSONResponse("b")

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in [("/peek", peek), ("/a", request_a)]]
    routes += [Route("/b", request_b, methods=["POST"]), Route("/show", show, methods=["POST"])]
    app = make_app([*BASIC_ROUTES, *routes], store=store)
    cookie, _ = await asgi(app, "/update_session", body=json.dumps({"a": 1, "cart": ["x"]}).encode())
    assert cookie is not None
    await asgi(app, "/peek", cookie)
    assert len(store._decoded) == 1

    b = asyncio.get_running_loop().create_task(asgi(app, "/b", cookie))
    await b_loaded.wait()
    await asgi(app, "/a", cookie)
    a_finished.set()
    await b
    await asyncio.gather(*tasks)

    assert json.loads((await asgi(app, "/show", cookie))[1]) == {"a": 1, "cart": ["x"]}
    for text, values, _ in store._decoded._entries.values():
        assert dict(values) == decode_all(text)
    await store.aclose()
