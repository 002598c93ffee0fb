"""The README's FastAPI quickstart, as a test."""

from __future__ import annotations

from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient

from live_session import LiveSessionMiddleware, live_session


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
