"""A minimal app for the library's own real-socket tests, so the demo's pages can change freely.

``uvicorn --app-dir tests --factory live_app:create``: sessions in memory, or in the Redis that
``LIVE_SESSION_REDIS`` names.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from live_session import LiveSessionMiddleware, MemoryStore, RedisStore, Store, ensure_session, live_session
from live_session import stream_session as stream


async def page(request: Request) -> Response:
    live = await ensure_session(request)
    return JSONResponse({"version": live.version, "session": dict(request.session)})


async def add(request: Request) -> Response:
    item = parse_qs((await request.body()).decode())["item"][0]
    request.session.setdefault("cart", []).append(item)
    return Response(status_code=303, headers={"location": "/"})


async def live(websocket: WebSocket) -> None:
    session = live_session(websocket)

    async def on_message(text: str) -> None:
        item = json.loads(text)["add"]
        await session.modify(lambda data: data.setdefault("cart", []).append(item))

    await stream(websocket, on_message=on_message)


def create() -> Starlette:
    url = os.environ.get("LIVE_SESSION_REDIS")
    store: Store = RedisStore(url) if url else MemoryStore()
    return Starlette(
        routes=[Route("/", page), Route("/add", add, methods=["POST"]), WebSocketRoute("/live", live)],
        middleware=[Middleware(LiveSessionMiddleware, secret_key="live-app-secret", store=store)],
    )
