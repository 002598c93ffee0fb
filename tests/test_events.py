"""session_events(): a session's updates as server-sent events, on every store.

Driven as raw ASGI, so the test decides when the client goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from live_session import SessionUpdate, Store, session_events
from live_session._ids import store_key
from live_session.testing import seed_session

from .conftest import SECRET, make_app

pytestmark = pytest.mark.anyio


class Stream:
    """One event-stream request in flight: what the app sent, and a way to hang up."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.hang_up = asyncio.Event()
        self.buffer = ""

    async def receive(self) -> Message:
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self.messages.put(message)

    async def next_message(self) -> Message:
        return await asyncio.wait_for(self.messages.get(), 5)

    async def next_event(self) -> str:
        """The next block of the stream (up to a blank line)."""
        while "\n\n" not in self.buffer:
            message = await self.next_message()
            assert message["type"] == "http.response.body" and message.get("more_body"), message
            self.buffer += message["body"].decode()
        event, self.buffer = self.buffer.split("\n\n", 1)
        return event


@asynccontextmanager
async def open_stream(
    store: Store, cookie: str | None, *, fails: bool = False, **options: Any
) -> AsyncIterator[tuple[Stream, asyncio.Task[None]]]:
    async def events(request: Request) -> Response:
        return session_events(request, **options)

    app = make_app([Route("/events", events)], store=store)
    headers = [(b"host", b"testserver")] + ([(b"cookie", f"session={cookie}".encode())] if cookie else [])
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/events", "raw_path": b"/events", "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    stream = Stream()
    task = asyncio.create_task(app(scope, stream.receive, stream.send))
    try:
        yield stream, task
    finally:
        stream.hang_up.set()
        await asyncio.wait([task], timeout=5)
    assert task.done(), "the app did not return after the client went away"
    if not fails:
        task.result()


async def started(stream: Stream) -> dict[bytes, bytes]:
    start = await stream.next_message()
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert await stream.next_event() == "retry: 1000"
    return dict(start["headers"])


async def test_snapshot_then_every_change_then_hang_up(store: Store) -> None:
    cookie = await seed_session(store, {"cart": ["tea"]}, secret_key=SECRET)
    async with open_stream(store, cookie) as (stream, task):
        headers = await started(stream)
        assert headers[b"content-type"].startswith(b"text/event-stream")
        assert headers[b"cache-control"] == b"no-cache"
        assert b"content-length" not in headers  # a stream has no length
        first = await stream.next_event()
        assert first.startswith("id: 1\nevent: session\ndata: ")
        assert '"reason":"snapshot"' in first and '"cart":["tea"]' in first

        key = store_key(cookie.split(".")[0])
        await store.commit(key, {"cart": '["tea","mug"]'}, (), ttl=60)
        second = await stream.next_event()
        assert second.startswith("id: 2\n") and '"cart":["tea","mug"]' in second

        stream.hang_up.set()
        await asyncio.wait_for(task, 5)  # it stops as soon as the client goes away
    assert await store.load(key) is not None


async def test_the_stream_ends_after_the_session_does(store: Store) -> None:
    cookie = await seed_session(store, {"user": "ada"}, secret_key=SECRET)
    async with open_stream(store, cookie) as (stream, task):
        await started(stream)
        await stream.next_event()
        await store.destroy(store_key(cookie.split(".")[0]))
        assert '"reason":"destroyed"' in await stream.next_event()
        end = await stream.next_message()
        assert end == {"type": "http.response.body", "body": b"", "more_body": False}
        await asyncio.wait_for(task, 5)


async def test_no_session_is_204_so_event_source_stops(store: Store) -> None:
    async with open_stream(store, None) as (stream, _):
        start = await stream.next_message()
        assert start["status"] == 204


def htmx_regions(update: SessionUpdate) -> Mapping[str, Any]:
    cart = update.session.get("cart", [])
    return {"count": str(len(cart)), "cart": "\n".join(f"<li>{item}</li>" for item in cart)}


async def test_named_events_for_htmx_and_multiline_data(store: Store) -> None:
    cookie = await seed_session(store, {"cart": ["tea", "mug"]}, secret_key=SECRET)
    async with open_stream(store, cookie, render=htmx_regions) as (stream, _):
        await started(stream)
        assert await stream.next_event() == "id: 1\nevent: count\ndata: 2"
        assert await stream.next_event() == "id: 1\nevent: cart\ndata: <li>tea</li>\ndata: <li>mug</li>"


async def test_pings_keep_a_quiet_stream_open(store: Store) -> None:
    cookie = await seed_session(store, {}, secret_key=SECRET)
    async with open_stream(store, cookie, ping_interval=0.05) as (stream, _):
        await started(stream)
        await stream.next_event()
        assert await stream.next_event() == ": ping"
        assert await stream.next_event() == ": ping"


@pytest.mark.parametrize("name", ["", "two\nlines", "a:b"])
async def test_event_names_that_would_break_the_stream_are_refused(store: Store, name: str) -> None:
    cookie = await seed_session(store, {}, secret_key=SECRET)
    render: Callable[[SessionUpdate], Mapping[str, Any]] = lambda update: {name: "x"}  # noqa: E731
    async with open_stream(store, cookie, render=render, fails=True) as (stream, task):
        await started(stream)
        with pytest.raises(ValueError, match="event name"):
            await asyncio.wait_for(task, 5)


async def test_a_client_gone_on_send_ends_the_stream_quietly(store: Store) -> None:
    """ASGI 2.4 servers raise OSError from send once the client is gone."""
    cookie = await seed_session(store, {"cart": ["tea"]}, secret_key=SECRET)

    async def events(request: Request) -> Response:
        return session_events(request)

    app = make_app([Route("/events", events)], store=store)
    headers = [(b"host", b"testserver"), (b"cookie", f"session={cookie}".encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/events", "raw_path": b"/events", "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    never = asyncio.Event()

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client gone")

    await asyncio.wait_for(app(scope, receive, send), 5)  # returns, raising nothing


async def test_only_real_line_breaks_split_event_data(store: Store) -> None:
    cookie = await seed_session(store, {}, secret_key=SECRET)
    text = "one\u2028still one\x0cstill one\r\ntwo\rthree\n"
    async with open_stream(store, cookie, render=lambda update: {"x": text}) as (stream, _):
        await started(stream)
        event = await stream.next_event()
        assert event == "id: 1\nevent: x\ndata: one\u2028still one\x0cstill one\ndata: two\ndata: three\ndata: "
