"""``stream_session()``: push a session's updates down a WebSocket until either side is done."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ._errors import SessionNotFound
from ._live import live_session
from ._updates import SessionUpdate

__all__ = ["stream_session", "update_message"]

# Close codes the page can act on: 4401 means there is no session (any more);
# 1012 that the server is restarting (the store closed), so reconnect.
CLOSE_NO_SESSION = 4401
CLOSE_SERVER_GOING_AWAY = 1012


def update_message(update: SessionUpdate) -> dict[str, Any]:
    """The default JSON message for an update."""
    return {
        "reason": update.reason,
        "version": update.version,
        "session": update.session,
        "changed": sorted(update.changed),
        "removed": sorted(update.removed),
    }


async def stream_session(
    websocket: WebSocket,
    *,
    render: Callable[[SessionUpdate], Any] = update_message,
    on_message: Callable[[str], Awaitable[None]] | None = None,
    max_queue: int = 64,
) -> None:
    """Accept the WebSocket (if needed) and send every update of its session as JSON.

    The first message is the current snapshot. It returns when the client
    disconnects, or after the update that ends the session (``destroyed``, ``evicted``,
    ``expired``, ``regenerated``: the socket is then closed with code 1000 and
    the reason as close reason, so the page can reconnect or show it). Text
    messages from the client go to ``on_message``. Without a session the socket
    is closed with code 4401::

        @app.websocket_route("/live")
        async def live(websocket):
            await stream_session(websocket, render=lambda u: {"cart": u.session.get("cart", [])})
    """
    if websocket.client_state == WebSocketState.CONNECTING:
        await websocket.accept()
    async with contextlib.AsyncExitStack() as stack:
        try:
            updates = await stack.enter_async_context(live_session(websocket).subscribe(max_queue=max_queue))
        except SessionNotFound:
            await websocket.close(CLOSE_NO_SESSION, "no session")
            return
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(_read(websocket, on_message))
                code, reason = CLOSE_SERVER_GOING_AWAY, "server closing"
                async for update in updates:
                    await websocket.send_json(render(update))
                    if update.terminal:
                        code, reason = 1000, update.reason
                reader.cancel()
                await websocket.close(code, reason)
        except* WebSocketDisconnect:
            pass


async def _read(websocket: WebSocket, on_message: Callable[[str], Awaitable[None]] | None) -> None:
    """Receive until the client goes away; that ends the stream."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is not None and on_message is not None:
            await on_message(text)
