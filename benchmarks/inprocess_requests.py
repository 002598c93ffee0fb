"""Per-request cost, in process through ASGI: live-session's MemoryStore next to Starlette's SessionMiddleware.

Run: .venv/bin/python benchmarks/inprocess_requests.py   (after scripts/test or scripts/demo made .venv)

The same Starlette app (one route reads the session, one changes a key of a session holding a
user id and a 10-item cart) is driven directly through ASGI, with no network, so what differs
is the session layer. Every figure comes from the same run; rounds are interleaved and the best
of them is kept, and ratios are what to compare across machines.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import itsdangerous
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from live_session import LiveSessionMiddleware, MemoryStore
from live_session.testing import seed_session

SECRET = "benchmark-secret"  # noqa: S105 - a benchmark, not a deployment
SESSION = {"user": 42, "cart": [{"sku": f"item-{i}", "qty": i + 1} for i in range(10)]}
REQUESTS = 20_000
ROUNDS = 5


async def read(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("user")))


async def write(request: Request) -> PlainTextResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return PlainTextResponse("ok")


async def bare(request: Request) -> PlainTextResponse:
    return PlainTextResponse("42")


def build(middleware: list[Middleware]) -> Starlette:
    return Starlette(routes=[Route("/read", read), Route("/write", write), Route("/bare", bare)], middleware=middleware)


async def drive(app: ASGIApp, path: str, cookie: str | None) -> float:
    headers = [(b"host", b"bench")]
    if cookie:
        headers.append((b"cookie", b"session=" + cookie.encode()))
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    started = time.perf_counter()
    for _ in range(REQUESTS):
        await app(dict(template), receive, send)
    return REQUESTS / (time.perf_counter() - started)


async def main() -> None:
    starlette_cookie = (
        itsdangerous.TimestampSigner(SECRET).sign(base64.b64encode(json.dumps(SESSION).encode())).decode()
    )
    store = MemoryStore()
    ours_cookie = await seed_session(store, SESSION, secret_key=SECRET)
    cases: dict[str, tuple[ASGIApp, str, str | None]] = {
        "no session middleware (limit)": (build([]), "/bare", None),
        "starlette read": (build([Middleware(SessionMiddleware, secret_key=SECRET)]), "/read", starlette_cookie),
        "live-session memory read": (
            build([Middleware(LiveSessionMiddleware, secret_key=SECRET, store=store)]),
            "/read",
            ours_cookie,
        ),
        "starlette write": (build([Middleware(SessionMiddleware, secret_key=SECRET)]), "/write", starlette_cookie),
        "live-session memory write": (
            build([Middleware(LiveSessionMiddleware, secret_key=SECRET, store=store)]),
            "/write",
            ours_cookie,
        ),
    }
    best: dict[str, float] = dict.fromkeys(cases, 0.0)
    for _ in range(ROUNDS):
        for name, (app, path, cookie) in cases.items():
            best[name] = max(best[name], await drive(app, path, cookie))
    results: dict[str, Any] = {name: round(rate) for name, rate in best.items()}
    for name, rate in results.items():
        print(f"{name:32s} {rate:>8} req/s")
    print(f"read  ratio live-session / starlette: {best['live-session memory read'] / best['starlette read']:.2f}x")
    print(f"write ratio live-session / starlette: {best['live-session memory write'] / best['starlette write']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
