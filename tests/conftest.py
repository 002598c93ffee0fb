from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from live_session import LiveSession, LiveSessionMiddleware, MemoryStore, Store, live_session
from live_session.testing import seed_session

SECRET = "test-secret"
IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip a test for a missing component; under CI=true a missing component is a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: would-be skips fail)")
    pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory"])
def store(request: pytest.FixtureRequest) -> Store:
    # The shared store suite: every test that takes `store` runs against each backend.
    return MemoryStore(clean_interval=0.05)


async def view_session(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def update_session(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"session": request.session})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": request.session})


async def no_session(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


BASIC_ROUTES: list[BaseRoute] = [
    Route("/view_session", view_session),
    Route("/update_session", update_session, methods=["POST"]),
    Route("/clear_session", clear_session, methods=["POST"]),
    Route("/no_session", no_session),
]


def make_app(routes: list[BaseRoute] | None = None, **options: Any) -> Starlette:
    options.setdefault("secret_key", SECRET)
    return Starlette(routes=routes or BASIC_ROUTES, middleware=[Middleware(LiveSessionMiddleware, **options)])


@pytest.fixture
def client_factory() -> Callable[..., TestClient]:
    return TestClient


async def _no_receive() -> Message:
    return {"type": "websocket.connect"}


async def _no_send(message: Message) -> None:
    raise AssertionError(f"unexpected send {message}")


async def open_live(middleware_options: dict[str, Any], cookie: str | None) -> LiveSession:
    """A LiveSession as a WebSocket handler would get it, made by the real middleware."""
    captured: list[LiveSession] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        captured.append(live_session(WebSocket(scope, receive, send)))

    options = {"secret_key": SECRET, **middleware_options}
    middleware = LiveSessionMiddleware(endpoint, **options)
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"session={cookie}".encode()))
    scope = {"type": "websocket", "path": "/ws", "headers": headers, "scheme": "ws", "query_string": b""}
    await middleware(scope, _no_receive, _no_send)
    return captured[0]


@pytest.fixture
async def seeded(store: Store) -> AsyncIterator[Callable[..., Awaitable[LiveSession]]]:
    """Seed a session in `store` and open live handles on it."""

    async def factory(data: dict[str, Any] | None = None, cookie: str | None = None) -> LiveSession:
        if cookie is None:
            cookie = await seed_session(store, data or {}, secret_key=SECRET)
        return await open_live({"store": store}, cookie)

    yield factory
    await store.aclose()
