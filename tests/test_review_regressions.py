"""Edge cases found in review: each one once broke a promise of the middleware or the store."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from typing import Any

import itsdangerous
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Receive, Scope, Send

from live_session import LiveSessionMiddleware, MemoryStore, Subscription, live_session
from live_session.testing import seed_session

from .conftest import BASIC_ROUTES, SECRET, make_app
from .test_hostile import call


def starlette_cookie(data: dict[str, Any], secret: str = SECRET) -> str:
    payload = base64.b64encode(json.dumps(data).encode())  # json.dumps writes NaN, as Starlette does
    return itsdangerous.TimestampSigner(secret).sign(payload).decode()


@pytest.mark.parametrize("data", [{"x": float("nan")}, {"big": "x" * 3000}])
def test_unmigratable_starlette_cookie_is_dropped_not_a_500(
    data: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(max_session_size=1024)
    client = TestClient(make_app(store=store), cookies={"session": starlette_cookie(data)})
    with caplog.at_level(logging.WARNING, logger="live_session"):
        response = client.get("/view_session")
    assert response.status_code == 200 and response.json() == {"session": {}}
    assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
    assert "cannot be migrated" in caplog.text and len(store) == 0


def test_response_start_without_headers_key() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["seen"] = True
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    status, headers = call(LiveSessionMiddleware(raw, secret_key=SECRET), [])
    assert status == 200 and any(name.lower() == b"set-cookie" for name, _ in headers)


def test_response_headers_given_as_a_tuple() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["seen"] = True
        await send({"type": "http.response.start", "status": 200, "headers": ((b"x-app", b"1"),)})
        await send({"type": "http.response.body", "body": b"ok"})

    status, headers = call(LiveSessionMiddleware(raw, secret_key=SECRET), [])
    names = [name.lower() for name, _ in headers]
    assert status == 200 and b"x-app" in names and b"set-cookie" in names and b"vary" in names


def test_cookie_refreshed_even_when_the_route_never_reads_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(make_app(max_age=1000))
    client.post("/update_session", json={"a": 1})
    assert "set-cookie" not in client.get("/no_session").headers
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 600)
    response = client.get("/no_session")
    assert "Max-Age=1000" in response.headers["set-cookie"] and "cookie" in response.headers["vary"].lower()


def test_cookie_signed_by_an_old_key_is_re_signed_at_once() -> None:
    store = MemoryStore()
    old_cookie = asyncio.run(seed_session(store, {"a": 1}, secret_key="old"))
    client = TestClient(make_app(store=store, secret_key=["new", "old"]), cookies={"session": old_cookie})
    response = client.get("/view_session")
    assert response.json() == {"session": {"a": 1}}
    fresh = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    only_new = TestClient(make_app(store=store, secret_key="new"), cookies={"session": fresh})
    assert only_new.get("/view_session").json() == {"session": {"a": 1}}


def test_cross_site_websocket_with_a_starlette_cookie_is_refused() -> None:
    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))

    from starlette.routing import WebSocketRoute

    app = make_app([WebSocketRoute("/ws", ws)])
    client = TestClient(app, cookies={"session": starlette_cookie({"user": "ada"})})
    with (
        pytest.raises(WebSocketDenialResponse),
        client.websocket_connect("/ws", headers={"origin": "http://evil.example"}),
    ):
        pass
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as socket:
        assert socket.receive_json() == {"user": "ada"}


def test_an_explicit_write_of_the_loaded_value_still_wins() -> None:
    """The request loads count=0, a live view sets 5, the request then sets 0: the request wrote last."""
    loaded, gate = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> JSONResponse:
        count = request.session["count"]
        loaded.set()
        await asyncio.wait_for(gate.wait(), 5)
        request.session["count"] = count
        return JSONResponse({})

    async def live_write(request: Request) -> JSONResponse:
        await live_session(request).put("count", 5)
        return JSONResponse({})

    app = make_app([*BASIC_ROUTES, Route("/slow", slow), Route("/live", live_write)])

    async def run() -> Any:
        import httpx2

        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as c:
            response = await c.post("/update_session", json={"count": 0})
            c.cookies.set("session", response.headers["set-cookie"].split(";")[0].split("=", 1)[1])
            task = asyncio.create_task(c.get("/slow"))
            await asyncio.wait_for(loaded.wait(), 5)
            await c.get("/live")
            gate.set()
            await task
            return (await c.get("/view_session")).json()["session"]

    assert asyncio.run(run()) == {"count": 0}


@pytest.mark.anyio
async def test_updates_from_another_thread_keep_their_order_and_keys() -> None:
    store = MemoryStore()
    await store.commit("k", {"n": "0"}, (), ttl=60, create=True)
    async with store.subscribe("k") as updates:
        await anext(updates)

        def other_thread() -> None:
            asyncio.run(store.commit("k", {"a": "1"}, (), ttl=60))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(5)
        await store.commit("k", {"b": "1"}, (), ttl=60)  # this thread, before yielding to the loop
        first = await asyncio.wait_for(anext(updates), 5)
        second = await asyncio.wait_for(anext(updates), 5)
    assert (set(first.changed), set(second.changed)) == ({"a"}, {"b"})
    assert first.version < second.version


@pytest.mark.anyio
async def test_updates_queued_at_once_then_from_another_thread_keep_their_order() -> None:
    """From its own thread an update is queued at once; after one from elsewhere, all go through the loop."""
    store = MemoryStore()
    await store.commit("k", {"n": "0"}, (), ttl=60, create=True)
    async with store.subscribe("k") as updates:
        await anext(updates)
        await store.commit("k", {"z": "1"}, (), ttl=60)  # this thread: queued at once
        thread = threading.Thread(target=lambda: asyncio.run(store.commit("k", {"a": "1"}, (), ttl=60)))
        thread.start()
        thread.join(5)
        await store.commit("k", {"b": "1"}, (), ttl=60)  # must not overtake the other thread's
        changed = [set((await asyncio.wait_for(anext(updates), 5)).changed) for _ in range(3)]
    assert changed == [{"z"}, {"a"}, {"b"}]


@pytest.mark.anyio
async def test_sweep_terminates_when_float_rounding_files_a_session_early() -> None:
    store = MemoryStore(clean_interval=0.1)
    clock = [0.0]
    store._clock = lambda: clock[0]
    await store.commit("k", {"a": "1"}, (), ttl=3.6000000000000005, create=True)
    clock[0] = 3.6000000000000000  # the bucket is due, the session not quite
    assert store.sweep() == 0
    clock[0] = 3.8
    assert store.sweep() == 1


@pytest.mark.anyio
async def test_max_queue_must_hold_the_snapshot_and_the_newest_update() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Subscription(1)


def test_braces_in_cookie_attributes() -> None:
    client = TestClient(make_app(domain="{tenant}.example.com"))
    assert "domain={tenant}.example.com" in client.post("/update_session", json={"a": 1}).headers["set-cookie"]
