"""Live connections through real ASGI WebSockets: read-only handshake session, Origin check, streaming."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from live_session import MemoryStore, ensure_session, live_session, stream_session

from .conftest import BASIC_ROUTES, make_app


async def handshake_session(websocket: WebSocket) -> None:
    await websocket.accept()
    session = websocket.session
    try:
        session["x"] = 1
    except TypeError as error:
        await websocket.send_json({"session": dict(session), "error": str(error)})
    await websocket.close()


async def stream(websocket: WebSocket) -> None:
    async def on_message(text: str) -> None:
        key, _, value = text.partition("=")
        await live_session(websocket).put(key, value)

    await stream_session(websocket, on_message=on_message)


async def page(request: Request) -> PlainTextResponse:
    await ensure_session(request)
    return PlainTextResponse("page")


async def login(request: Request) -> JSONResponse:
    request.session["user"] = request.query_params["user"]
    await live_session(request).regenerate()
    return JSONResponse(request.session)


async def logout(request: Request) -> JSONResponse:
    await live_session(request).destroy()
    return JSONResponse(request.session)


ROUTES = [
    *BASIC_ROUTES,
    Route("/page", page),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    WebSocketRoute("/handshake", handshake_session),
    WebSocketRoute("/live", stream),
]


def client(**options: Any) -> TestClient:
    return TestClient(make_app(ROUTES, **options))


def test_websocket_session_is_a_read_only_snapshot() -> None:
    c = client()
    c.post("/update_session", json={"cart": [1]})
    with c.websocket_connect("/handshake") as ws:
        message = ws.receive_json()
    assert message["session"] == {"cart": [1]}
    assert "read-only" in message["error"] and "live_session(websocket)" in message["error"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://testserver", True),
        ("http://TESTSERVER:80", True),
        ("https://testserver", True),  # same host; TLS may end at a proxy in front of the app
        ("http://testserver:8080", False),  # another port
        ("http://evil.example", False),
        ("http://testserver.evil.example", False),
        ("null", False),
        ("http://trusted.example", True),
    ],
)
def test_cross_site_websocket_with_a_session_is_refused(origin: str | None, allowed: bool) -> None:
    c = client(allowed_origins=["http://trusted.example/"])
    c.post("/update_session", json={"user": "ada"})
    headers = {"origin": origin} if origin else {}
    if allowed:
        with c.websocket_connect("/live", headers=headers) as ws:
            assert ws.receive_json()["session"] == {"user": "ada"}
    else:
        with pytest.raises(WebSocketDenialResponse) as denied, c.websocket_connect("/live", headers=headers):
            pass
        assert denied.value.status_code == 403


def test_foreign_origin_without_a_session_is_not_the_middleware_s_business() -> None:
    c = client()
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        c.websocket_connect("/live", headers={"origin": "http://evil.example"}) as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 4401  # stream_session: no session


def test_http_change_reaches_the_live_view_and_live_write_reaches_http() -> None:
    c = client()
    c.get("/page")
    with c.websocket_connect("/live") as tab_a, c.websocket_connect("/live") as tab_b:
        assert tab_a.receive_json()["reason"] == "snapshot"
        assert tab_b.receive_json()["reason"] == "snapshot"
        c.post("/update_session", json={"cart": ["apple"]})
        for tab in (tab_a, tab_b):
            update = tab.receive_json()
            assert update["session"] == {"cart": ["apple"]} and update["changed"] == ["cart"]
        tab_a.send_text("theme=dark")
        for tab in (tab_a, tab_b):
            assert tab.receive_json()["session"] == {"cart": ["apple"], "theme": "dark"}
    assert c.get("/view_session").json() == {"session": {"cart": ["apple"], "theme": "dark"}}


def test_login_regenerates_and_old_subscriptions_end() -> None:
    store = MemoryStore()
    c = client(store=store)
    old = c.get("/page").headers["set-cookie"]
    with c.websocket_connect("/live") as tab:
        tab.receive_json()
        response = c.post("/login?user=ada")
        assert response.headers["set-cookie"].split(";")[0] != old.split(";")[0]
        update = tab.receive_json()
        assert update["reason"] == "regenerated"
        with pytest.raises(WebSocketDisconnect) as closed:
            tab.receive_json()
        assert closed.value.code == 1000 and closed.value.reason == "regenerated"
    # The old cookie is dead; the new one carries the logged-in session.
    assert TestClient(c.app, cookies={"session": old.split(";")[0].split("=")[1]}).get("/view_session").json() == {
        "session": {}
    }
    assert c.get("/view_session").json() == {"session": {"user": "ada"}}
    assert len(store) == 1


def test_logout_destroys_everywhere() -> None:
    store = MemoryStore()
    c = client(store=store)
    c.post("/login?user=ada")
    with c.websocket_connect("/live") as tab:
        assert tab.receive_json()["session"] == {"user": "ada"}
        response = c.post("/logout")
        assert response.json() == {}
        assert "expires=Thu, 01 Jan 1970" in response.headers["set-cookie"]
        update = tab.receive_json()
        assert update["reason"] == "destroyed" and update["session"] == {}
    assert len(store) == 0


def test_a_request_that_loaded_before_a_live_write_keeps_both() -> None:
    """The request reads the session, a live view writes `a`, the request then writes `b`."""
    gate = asyncio.Event()
    loaded = asyncio.Event()
    done: dict[str, Any] = {}

    async def slow(request: Request) -> JSONResponse:
        _ = request.session["base"]
        loaded.set()
        await asyncio.wait_for(gate.wait(), 5)
        request.session["b"] = 2
        return JSONResponse({})

    async def live_write(request: Request) -> JSONResponse:
        await live_session(request).put("a", 1)
        return JSONResponse({})

    app = make_app([*BASIC_ROUTES, Route("/slow", slow), Route("/live_write", live_write)])

    async def run() -> None:
        import httpx2

        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as c:
            response = await c.post("/update_session", json={"base": 0})
            c.cookies.set("session", response.headers["set-cookie"].split(";")[0].split("=")[1])
            slow_request = asyncio.create_task(c.get("/slow"))
            await asyncio.wait_for(loaded.wait(), 5)
            await c.get("/live_write")
            gate.set()
            await slow_request
            done["session"] = (await c.get("/view_session")).json()["session"]

    asyncio.run(run())
    assert done["session"] == {"base": 0, "a": 1, "b": 2}


def test_a_request_that_ends_after_logout_never_resurrects_the_session() -> None:
    gate = asyncio.Event()
    loaded = asyncio.Event()
    store = MemoryStore()

    async def slow(request: Request) -> JSONResponse:
        _ = request.session["user"]
        loaded.set()
        await asyncio.wait_for(gate.wait(), 5)
        request.session["cart"] = ["late"]
        return JSONResponse({})

    app = make_app([*ROUTES, Route("/slow", slow)], store=store)

    async def run() -> None:
        import httpx2

        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as c:
            response = await c.post("/login?user=ada")
            cookie = response.headers["set-cookie"].split(";")[0].split("=")[1]
            c.cookies.set("session", cookie)
            slow_request = asyncio.create_task(c.get("/slow"))
            await asyncio.wait_for(loaded.wait(), 5)
            await c.post("/logout")
            gate.set()
            late = await slow_request
            assert "set-cookie" not in late.headers
            assert len(store) == 0
            c.cookies.set("session", cookie)
            assert (await c.get("/view_session")).json() == {"session": {}}

    asyncio.run(run())
