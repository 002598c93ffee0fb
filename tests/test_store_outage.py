"""While the store is down the middleware answers 503, never a 500 or the app's unsaved success."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from live_session import RedisStore, live_session

from .conftest import make_app
from .redis_server import RedisServer


@pytest.fixture
def client(fresh_redis: RedisServer) -> Iterator[TestClient]:
    async def write(request: Request) -> JSONResponse:
        if request.query_params.get("kill"):
            fresh_redis.kill()  # Redis dies while the request runs, before its changes are stored
        request.session["cart"] = ["tea"]
        return JSONResponse({"saved": True})

    async def read(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))

    async def live_write(request: Request) -> JSONResponse:
        fresh_redis.kill()
        await live_session(request).put("theme", "dark")  # raises StoreUnavailable, in the app
        return JSONResponse({"saved": True})

    routes = [
        Route("/write", write, methods=["POST"]),
        Route("/live-write", live_write, methods=["POST"]),
        Route("/read", read),
        WebSocketRoute("/live", live),
    ]
    store = RedisStore(fresh_redis.url, socket_timeout=1)
    with TestClient(make_app(routes, store=store)) as test_client:
        yield test_client


def test_a_write_that_cannot_be_stored_is_a_503(
    client: TestClient, fresh_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.post("/write").json() == {"saved": True}
    with caplog.at_level(logging.WARNING, logger="live_session"):
        response = client.post("/write?kill=1")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "saved" not in response.text
    assert "session store unavailable" in caplog.text


def test_reads_and_handshakes_get_503_until_the_store_is_back(client: TestClient, fresh_redis: RedisServer) -> None:
    client.post("/write")
    fresh_redis.kill()
    assert client.get("/read").status_code == 503
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/live"):
        pass
    assert refused.value.status_code == 503
    fresh_redis.restart()
    assert client.get("/read").json() == {"cart": ["tea"]}  # persistence kept it
    with client.websocket_connect("/live") as ws:
        assert ws.receive_json() == {"cart": ["tea"]}


def test_a_store_error_raised_by_the_app_is_a_503_too(client: TestClient) -> None:
    client.post("/write")
    response = client.post("/live-write")
    assert response.status_code == 503 and "saved" not in response.text
