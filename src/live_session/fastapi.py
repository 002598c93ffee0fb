"""FastAPI dependencies: a route's or WebSocket endpoint's ``LiveSession``, by type annotation.

::

    from live_session.fastapi import LiveSessionDep, NewLiveSessionDep

    @app.get("/")
    async def page(live: NewLiveSessionDep):  # the session exists; the response sets its cookie
        ...

    @app.post("/cart/{item}")
    async def add(item: str, live: LiveSessionDep):
        await live.modify(lambda data: data.setdefault("cart", []).append(item))

    @app.websocket("/live")
    async def updates(websocket: WebSocket, live: LiveSessionDep):
        await websocket.accept()
        async with live.subscribe() as updates:
            async for update in updates:
                await websocket.send_json(update.session)
"""

from __future__ import annotations

from typing import Annotated

from starlette.requests import HTTPConnection, Request

from ._live import LiveSession, ensure_session, live_session

try:
    from fastapi import Depends
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError("live_session.fastapi needs FastAPI: pip install fastapi") from error

__all__ = ["LiveSessionDep", "NewLiveSessionDep", "get_live_session", "get_new_live_session"]


async def get_live_session(connection: HTTPConnection) -> LiveSession:
    """The connection's ``LiveSession`` (HTTP routes and WebSocket endpoints alike)."""
    return live_session(connection)


async def get_new_live_session(request: Request) -> LiveSession:
    """The request's ``LiveSession``, created first if there is none (``ensure_session``); HTTP routes only."""
    return await ensure_session(request)


LiveSessionDep = Annotated[LiveSession, Depends(get_live_session)]
NewLiveSessionDep = Annotated[LiveSession, Depends(get_new_live_session)]
