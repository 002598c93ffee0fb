"""The README's FastAPI quickstart, as a test."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient

from live_session import LiveSessionMiddleware, SessionNotFound, live_session
from live_session.fastapi import LiveSessionDep, NewLiveSessionDep


def build() -> FastAPI:
    app = FastAPI()
    app.add_middleware(LiveSessionMiddleware, secret_key="change-me")

    @app.post("/cart/{item}")
    async def add(item: str, request: Request) -> dict[str, list[str]]:
        request.session.setdefault("cart", []).append(item)
        return {"cart": request.session["cart"]}

    @app.websocket("/live")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        session = live_session(websocket)
        async with session.subscribe() as updates:
            async for update in updates:
                await websocket.send_json(update.session)
                if update.version > 2:
                    break

    return app


def test_fastapi_http_and_websocket_share_the_session() -> None:
    client = TestClient(build())
    assert client.post("/cart/apple").json() == {"cart": ["apple"]}
    with client.websocket_connect("/live") as ws:
        assert ws.receive_json() == {"cart": ["apple"]}
        client.post("/cart/pear")
        assert ws.receive_json() == {"cart": ["apple", "pear"]}


def build_with_dependencies() -> FastAPI:
    app = FastAPI()
    app.add_middleware(LiveSessionMiddleware, secret_key="change-me")

    @app.get("/")
    async def page(live: NewLiveSessionDep) -> dict[str, int]:
        return {"version": live.version}

    @app.post("/cart/{item}")
    async def add(item: str, live: LiveSessionDep) -> dict[str, Any]:
        return await live.modify(lambda data: data.setdefault("cart", []).append(item))

    @app.websocket("/live")
    async def updates(websocket: WebSocket, live: LiveSessionDep) -> None:
        await websocket.accept()
        async with live.subscribe() as stream:
            async for update in stream:
                await websocket.send_json({"version": update.version, "session": update.session})

    return app


def test_dependencies_give_routes_and_websockets_their_live_session() -> None:
    with TestClient(build_with_dependencies()) as client:
        first = client.get("/")
        assert first.json() == {"version": 1} and "set-cookie" in first.headers
        assert "set-cookie" not in client.get("/").headers  # it exists now: nothing to set
        with client.websocket_connect("/live") as ws:
            assert ws.receive_json() == {"version": 1, "session": {}}
            assert client.post("/cart/apple").json() == {"cart": ["apple"]}
            assert ws.receive_json() == {"version": 2, "session": {"cart": ["apple"]}}


def test_the_dependency_without_a_session_says_so() -> None:
    # LiveSessionDep does not create a session (NewLiveSessionDep does), so a live write has none to change.
    with TestClient(build_with_dependencies()) as client, pytest.raises(SessionNotFound):
        client.post("/cart/apple")
