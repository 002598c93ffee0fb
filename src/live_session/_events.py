"""``session_events()``: a session's updates as a server-sent event stream (``EventSource``, htmx's SSE extension)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._broadcast import Subscription
from ._errors import SessionNotFound
from ._live import live_session
from ._stream import update_message
from ._updates import SessionUpdate

__all__ = ["SessionEventStream", "session_events"]

# What the event-stream format counts as a line break (str.splitlines() knows more).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _default_render(update: SessionUpdate) -> Mapping[str, Any]:
    return {"session": update_message(update)}


def session_events(
    request: HTTPConnection,
    *,
    render: Callable[[SessionUpdate], Mapping[str, Any]] = _default_render,
    max_queue: int = 64,
    ping_interval: float = 15.0,
    retry: int = 1000,
) -> SessionEventStream:
    """A response that streams the request's session as server-sent events.

    ``render(update)`` maps event names to data: a string is sent as it is
    (HTML for htmx), anything else as JSON. The default sends one ``session``
    event whose data is the JSON of ``update_message``. Each event's ``id`` is
    the session's version. The first update is the current snapshot.

    The stream ends after the update that ends the session (``destroyed``,
    ``expired``, ``regenerated``); the browser reconnects after ``retry``
    milliseconds with its newest cookie. Without a session the answer is 204,
    which tells ``EventSource`` to stop. A comment line is sent after
    ``ping_interval`` seconds of silence, so proxies keep the connection open,
    and the stream stops as soon as the client goes away::

        @app.route("/events")
        async def events(request):
            return session_events(request, render=lambda u: {"cart": render_cart(u.session)})

        <div hx-ext="sse" sse-connect="/events" sse-swap="cart"></div>
    """
    return SessionEventStream(request, render=render, max_queue=max_queue, ping_interval=ping_interval, retry=retry)


class SessionEventStream(Response):
    """The response ``session_events()`` returns."""

    media_type = "text/event-stream"

    def __init__(
        self,
        request: HTTPConnection,
        *,
        render: Callable[[SessionUpdate], Mapping[str, Any]],
        max_queue: int,
        ping_interval: float,
        retry: int,
    ) -> None:
        # As StreamingResponse does: no body, so no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.live = live_session(request)
        self.events = render
        self.max_queue = max_queue
        self.ping_interval = ping_interval
        self.retry = retry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                updates = await stack.enter_async_context(self.live.subscribe(max_queue=self.max_queue))
            except SessionNotFound:
                await Response(status_code=204)(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            stream = asyncio.ensure_future(self._stream(updates, send))
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait([stream, gone], return_when=asyncio.FIRST_COMPLETED)
            finally:
                client_gone = gone.done()
                for task in (stream, gone):
                    task.cancel()
                await asyncio.gather(stream, gone, return_exceptions=True)
            if client_gone or isinstance(stream.exception(), OSError):
                return  # the client went away (an ASGI 2.4 server raises OSError on send)
            stream.result()  # re-raises what went wrong in the stream, if anything did
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, updates: Subscription, send: Send) -> None:
        await _send(send, f"retry: {self.retry}\n\n")
        while True:
            try:
                update = await asyncio.wait_for(anext(updates), self.ping_interval)
            except StopAsyncIteration:
                return  # the store closed
            except TimeoutError:
                await _send(send, ": ping\n\n")
                continue
            update = updates.merge_pending(update)
            await _send(send, _format(update, self.events(update)))
            if update.terminal:
                return


def _format(update: SessionUpdate, events: Mapping[str, Any]) -> str:
    chunks = []
    for name, data in events.items():
        if not name or any(char in name for char in "\r\n:"):
            raise ValueError(f"an event name cannot be empty or hold a line break or colon: {name!r}")
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text))
        chunks.append(f"id: {update.version}\nevent: {name}\n{lines}\n")
    return "".join(chunks)


async def _send(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
