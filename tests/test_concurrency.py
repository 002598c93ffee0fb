"""Nothing lost when many writers share a session, whatever the interleaving; nothing resurrected."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from live_session import LiveSession, MemoryStore, Store
from live_session._ids import store_key
from live_session.testing import seed_session

from .conftest import SECRET, make_app, open_live

pytestmark = pytest.mark.anyio

TASKS, UPDATES = 50, 200


async def test_fifty_tasks_of_two_hundred_atomic_updates(store: Store) -> None:
    """Each task counts in its own key and in one shared counter: every update is there at the end."""
    cookie = await seed_session(store, {"counter": 0}, secret_key=SECRET)
    views = [await open_live({"store": store}, cookie) for _ in range(TASKS)]
    updates = UPDATES if isinstance(store, MemoryStore) else UPDATES // 5  # Redis: 2,000 round trips a store

    async def worker(n: int, live: LiveSession) -> None:
        def bump(data: dict[str, Any]) -> None:
            data["counter"] += 1
            data[f"task{n}"] = data.get(f"task{n}", 0) + 1

        for _ in range(updates):
            await live.modify(bump)

    await asyncio.gather(*(worker(n, live) for n, live in enumerate(views)))
    record = await store.load(store_key(cookie.split(".")[0]))
    assert record is not None
    data = {name: json.loads(text) for name, text in record.data.items()}
    assert data == {"counter": TASKS * updates, **{f"task{n}": updates for n in range(TASKS)}}
    assert record.version == 1 + TASKS * updates


async def call(app: Any, cookie: str, path: str, gate: asyncio.Event | None = None) -> list[Message]:
    """One raw ASGI request with the cookie; with a gate, its body arrives only when the gate opens."""
    sent: list[Message] = []

    async def receive() -> Message:
        if gate is not None:
            await gate.wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", f"session={cookie}".encode())],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


async def write_b(request: Request) -> JSONResponse:
    await request.body()  # the request is slow: its body (the gate) comes late, after its session loaded
    request.session["b"] = request.session.get("b", 0) + 1
    return JSONResponse({})


async def yields(rng: random.Random) -> None:
    for _ in range(rng.randrange(4)):
        await asyncio.sleep(0)


async def test_a_request_and_a_live_write_never_lose_each_other(store: Store) -> None:
    """Randomised over many interleavings: the request loads, a live view writes `a`, the request writes `b`."""
    app = make_app([Route("/b", write_b, methods=["POST"])], store=store)
    rounds = 1000 if isinstance(store, MemoryStore) else 200
    for seed in range(rounds):
        rng = random.Random(seed)
        cookie = await seed_session(store, {"a": 0, "b": 0}, secret_key=SECRET)
        live = await open_live({"store": store}, cookie)
        gate = asyncio.Event()

        async def live_write(rng: random.Random = rng, live: LiveSession = live, gate: asyncio.Event = gate) -> None:
            await yields(rng)
            await live.modify(lambda data: data.update(a=data["a"] + 1))
            await yields(rng)
            gate.set()

        await asyncio.gather(call(app, cookie, "/b", gate), live_write())
        record = await store.load(store_key(cookie.split(".")[0]))
        assert record is not None, seed
        assert (json.loads(record.data["a"]), json.loads(record.data["b"])) == (1, 1), seed


async def test_a_request_that_ends_after_a_logout_never_brings_the_session_back(store: Store) -> None:
    app = make_app([Route("/b", write_b, methods=["POST"])], store=store)
    rounds = 1000 if isinstance(store, MemoryStore) else 200
    for seed in range(rounds):
        rng = random.Random(seed)
        cookie = await seed_session(store, {"user": "ada", "b": 0}, secret_key=SECRET)
        live = await open_live({"store": store}, cookie)
        gate = asyncio.Event()

        async def logout(rng: random.Random = rng, live: LiveSession = live, gate: asyncio.Event = gate) -> None:
            await yields(rng)
            await live.destroy()  # at logout, elsewhere
            await yields(rng)
            gate.set()

        sent, _ = await asyncio.gather(call(app, cookie, "/b", gate), logout())
        assert sent[0]["status"] == 200, seed
        assert not any(value.startswith(b"session=") and b"null" not in value for _, value in sent[0]["headers"])
        assert await store.load(store_key(cookie.split(".")[0])) is None, seed
