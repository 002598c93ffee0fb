"""The demo shop behind a slow link for sign-in: ``uvicorn --app-dir tests --factory slow_login_demo:create``.

The response to ``POST /login`` (which carries the new session cookie) is held back for
``SLOW_LOGIN_SECONDS`` after the app has produced it, so the other tabs hear that the session got
a new id well before the browser has the cookie for it. That is the fault being injected; the
tests still wait on what the pages show.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import demo

DELAY = float(os.environ.get("SLOW_LOGIN_SECONDS", "1.5"))


def create() -> ASGIApp:
    app = demo.create()

    async def slow_login(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/login":
            await app(scope, receive, send)
            return

        async def late_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(DELAY)
            await send(message)

        await app(scope, receive, late_send)

    return slow_login
