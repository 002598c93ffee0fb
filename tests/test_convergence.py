"""Many live views of one session, on real uvicorn processes: every view ends at the store's final state.

1,000 changes arrive through two paths: ``modify()`` from WebSocket messages, in bursts sent by
several views at once on every process, and plain HTTP requests through ``request.session``
between the bursts, alternating between the processes. Meanwhile 20 views (10 per process on one
Redis, or 20 on one process with ``MemoryStore``) stream every update. Each view must end at
exactly the store's final version and contents, with nothing lost and its versions only ever
going up.

An HTTP request commits the keys it changed as it read them (as Starlette's cookie sessions do),
so a request appending to ``cart`` while another write to ``cart`` lands in between overwrites
it. The HTTP changes are therefore sent one at a time, between bursts of concurrent WebSocket
changes, and never overlap another write; ``test_a_request_and_a_live_write_to_one_key`` shows
what happens when they do.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from live_session import MemoryStore
from live_session._ids import store_key
from live_session.testing import seed_session

from .conftest import REDIS_NAMES, SECRET, RedisServers, make_app, open_live
from .servers import live_app_server

CHANGES = 1000
ROUNDS = 10
HTTP_PER_ROUND = 20  # 200 changes over HTTP, 800 over WebSockets
WRITERS_PER_PROCESS = 4  # views that send changes; every view streams
TIMEOUT = 30.0


# The head of ``update_message``'s JSON, so that 20,000 messages of up to 12 KB need not all be decoded.
HEAD = re.compile(r'\{"reason":\s*"(\w+)",\s*"version":\s*(\d+),\s*"session":')


class View:
    """One live tab: a WebSocket on /live that records the reason and version of every update it is sent."""

    def __init__(self, name: str, socket: ClientConnection) -> None:
        self.name = name
        self.socket = socket
        self.updates: list[tuple[str, int]] = []
        self.last_text = ""
        self._changed = asyncio.Condition()
        self.task = asyncio.get_running_loop().create_task(self._read(), name=f"view {name}")

    async def _read(self) -> None:
        async for text in self.socket:
            assert isinstance(text, str)
            head = HEAD.match(text)
            assert head is not None, text[:100]
            self.updates.append((head[1], int(head[2])))
            self.last_text = text
            async with self._changed:
                self._changed.notify_all()

    @property
    def version(self) -> int:
        return self.updates[-1][1] if self.updates else -1

    @property
    def last(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.last_text)
        return message

    async def reach(self, version: int) -> None:
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: self.version >= version)

    async def add(self, items: list[str]) -> None:
        for item in items:
            await self.socket.send(json.dumps({"add": item}))


async def converge(servers: list[str], views_per_server: int) -> None:
    async with AsyncExitStack() as stack:
        https = [await stack.enter_async_context(httpx2.AsyncClient(base_url=f"http://{server}")) for server in servers]
        page = await https[0].get("/")
        assert page.status_code == 200
        start_version = page.json()["version"]
        cookie = https[0].cookies["session"]
        for http in https[1:]:
            http.cookies.set("session", cookie)

        views: list[View] = []
        for server in servers:
            for n in range(views_per_server):
                socket = await stack.enter_async_context(
                    connect(
                        f"ws://{server}/live",
                        origin=Origin(f"http://{server}"),
                        additional_headers={"Cookie": f"session={cookie}"},
                        open_timeout=TIMEOUT,
                        compression=None,  # deflating 20,000 messages would be most of the work
                    )
                )
                views.append(View(f"{server}#{n}", socket))
        for view in views:
            await view.reach(start_version)
        writers = [view for i, view in enumerate(views) if i % views_per_server < WRITERS_PER_PROCESS]

        expected: list[str] = []
        ws_per_round = CHANGES // ROUNDS - HTTP_PER_ROUND
        n_writers = len(writers)
        for round_ in range(ROUNDS):
            # A burst of live changes: every writing view, on every process, at once.
            batches = [[f"ws-{round_}-{w}-{i}" for i in range(w, ws_per_round, n_writers)] for w in range(n_writers)]
            await asyncio.gather(*(writer.add(batch) for writer, batch in zip(writers, batches, strict=True)))
            expected += [item for batch in batches for item in batch]
            await views[0].reach(start_version + len(expected))  # each change is one commit
            # Then the requests, alternating between the processes, while the views still stream.
            for i in range(HTTP_PER_ROUND):
                item = f"http-{round_}-{i}"
                response = await https[i % len(https)].post("/add", data={"item": item})
                assert response.status_code == 303, response.text
                expected.append(item)

        final = (await https[-1].get("/")).json()
        assert final == (await https[0].get("/")).json()  # every process reads the same
        cart = final["session"]["cart"]
        assert len(cart) == CHANGES and sorted(cart) == sorted(expected), "changes were lost or doubled"
        assert final["version"] == start_version + CHANGES  # one commit per change, no more, no less
        for view in views:
            await view.reach(final["version"])
        for view in views:
            versions = [version for _, version in view.updates]
            assert all(b > a for a, b in pairwise(versions)), f"{view.name}: versions went backwards"
            assert view.updates[0][0] == "snapshot"
            assert {reason for reason, _ in view.updates[1:]} <= {"updated"}
            last = view.last
            assert last["version"] == final["version"] and last["session"] == final["session"], view.name
        for view in views:
            await view.socket.close()
            async with asyncio.timeout(TIMEOUT):
                await view.task


@pytest.fixture
def two_processes(redis_servers: RedisServers, tmp_path: Path) -> Iterator[list[str]]:
    """Two uvicorn processes of ``tests/live_app.py`` on one Redis (the newest found: this is not about its version)."""
    redis = redis_servers.get(max(REDIS_NAMES))
    redis.flushall()
    with (
        live_app_server(tmp_path, LIVE_SESSION_REDIS=redis.url) as server_a,
        live_app_server(tmp_path, LIVE_SESSION_REDIS=redis.url) as server_b,
    ):
        yield [server_a, server_b]


def test_twenty_views_on_two_processes_converge(two_processes: list[str]) -> None:
    asyncio.run(converge(two_processes, views_per_server=10))


def test_twenty_views_on_one_process_with_memory_store_converge(tmp_path: Path) -> None:
    with live_app_server(tmp_path) as server:
        asyncio.run(converge([server], views_per_server=20))


@pytest.mark.anyio
async def test_a_request_and_a_live_write_to_one_key() -> None:
    """Why the HTTP changes above never overlap another write: a request commits the keys it changed
    with the values it computed from what it loaded, so a live write to the same key landing in
    between is overwritten (writes to other keys survive: see tests/test_concurrency.py).
    ``modify()`` is the atomic read-modify-write for that."""
    store = MemoryStore()
    cookie = await seed_session(store, {"cart": []}, secret_key=SECRET)
    tab = await open_live({"store": store}, cookie)  # another tab's WebSocket

    async def add(request: Request) -> Response:
        request.session["cart"].append("from-request")  # the cart as loaded before the handler ran
        await tab.modify(lambda data: data["cart"].append("from-live"))  # meanwhile, the other tab adds
        return Response()

    app = make_app([Route("/add", add, methods=["POST"])], store=store)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        client.cookies.set("session", cookie)
        assert (await client.post("/add")).status_code == 200
    record = await store.load(store_key(cookie.split(".")[0]))
    assert record is not None and record.version == 3  # both changes were committed...
    assert json.loads(record.data["cart"]) == ["from-request"]  # ...and the request's replaced the live one's
