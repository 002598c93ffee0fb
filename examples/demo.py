"""A minimal live-session demo: one session shared by a plain HTML form and live WebSocket views.

Open it in two tabs: add an item from either tab (over the WebSocket) or with the
form (a plain POST handled with ``request.session``), and both tabs update live.
Run it with ``scripts/demo`` (``--host``, ``--port``, ``--redis URL``, ``--workers N``). Processes
started separately against one Redis share sessions and accept each other's cookies when they share
``LIVE_SESSION_DEMO_SECRET`` (a fixed demo default otherwise).
"""

from __future__ import annotations

import argparse
import html
import json
import os
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from live_session import LiveSessionMiddleware, MemoryStore, Store, ensure_session, live_session, stream_session

SECRET_KEY = os.environ.get("LIVE_SESSION_DEMO_SECRET", "demo-secret-change-me")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>live-session demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
 h1 {{ font-size: 1.4rem; }} .status {{ font-size: .85rem; color: #777; }} .status.up {{ color: #178a3a; }}
 ul {{ padding-left: 1.2rem; }} form, .row {{ display: flex; gap: .5rem; margin: .6rem 0; }}
 input {{ flex: 1; padding: .4rem; }} button {{ padding: .4rem .8rem; cursor: pointer; }}
 .card {{ border: 1px solid #ddd; border-radius: 8px; padding: .8rem 1rem; margin: 1rem 0; }}
</style></head>
<body>
<h1>live-session demo</h1>
<p class="status" id="status">connecting&hellip;</p>
<div class="card">
  <strong>Cart</strong> (version <span id="version">{version}</span>)
  <ul id="cart">{items}</ul>
  <div class="row"><input id="item" placeholder="Add over the WebSocket"><button id="add">Add live</button>
  <button id="empty">Empty cart</button></div>
</div>
<div class="card">
  <form method="post" action="/add"><input name="item" placeholder="Add with a plain form POST">
  <button>Add with POST</button></form>
</div>
<p>Open this page in a second tab: every change shows up in both, whichever way it was made.</p>
<script>
const status = document.getElementById("status");
function render(session, version) {{
  const cart = document.getElementById("cart");
  cart.replaceChildren(...(session.cart || []).map(item => {{
    const li = document.createElement("li"); li.textContent = item; return li; }}));
  document.getElementById("version").textContent = version;
}}
let socket;
function connect() {{
  socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/live");
  socket.onopen = () => {{ status.textContent = "live"; status.className = "status up"; }};
  socket.onmessage = event => {{ const u = JSON.parse(event.data); render(u.session, u.version); }};
  socket.onclose = () => {{ status.textContent = "reconnecting…"; status.className = "status";
    setTimeout(connect, 1000); }};
}}
connect();
document.getElementById("add").onclick = () => {{
  const input = document.getElementById("item");
  if (input.value) socket.send(JSON.stringify({{add: input.value}})); input.value = "";
}};
document.getElementById("empty").onclick = () => socket.send(JSON.stringify({{empty: true}}));
</script>
</body></html>
"""


async def home(request: Request) -> Response:
    live = await ensure_session(request)  # the page's WebSocket needs a session to subscribe to
    items = "".join(f"<li>{html.escape(str(item))}</li>" for item in request.session.get("cart", []))
    return HTMLResponse(PAGE.format(items=items, version=live.version))


async def add(request: Request) -> Response:
    # A urlencoded form, read without python-multipart (Starlette's form parser needs it).
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    item = form.get("item", [""])[0].strip()
    if item:
        request.session.setdefault("cart", []).append(item[:100])
    return RedirectResponse("/", status_code=303)


async def live(websocket: WebSocket) -> None:
    session = live_session(websocket)

    async def on_message(text: str) -> None:
        message: dict[str, Any] = json.loads(text)
        if message.get("empty"):
            await session.delete("cart")
        elif isinstance(message.get("add"), str) and message["add"].strip():
            item = message["add"].strip()[:100]
            await session.modify(lambda data: data.setdefault("cart", []).append(item))

    await stream_session(websocket, on_message=on_message)


def create_app(store: Store | None = None) -> Starlette:
    return Starlette(
        routes=[Route("/", home), Route("/add", add, methods=["POST"]), WebSocketRoute("/live", live)],
        middleware=[Middleware(LiveSessionMiddleware, secret_key=SECRET_KEY, store=store)],
    )


def store_from_environment() -> Store:
    """``LIVE_SESSION_REDIS=redis://...`` puts sessions in Redis, shared by every demo process."""
    url = os.environ.get("LIVE_SESSION_REDIS")
    if url:
        from live_session import RedisStore

        return RedisStore(url)
    return MemoryStore()


app = create_app(store_from_environment())


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the live-session demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", metavar="URL", help="keep sessions in Redis, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs --redis to share sessions)")
    args = parser.parse_args()
    if args.redis:
        os.environ["LIVE_SESSION_REDIS"] = args.redis
    elif args.workers > 1:
        parser.error("--workers above 1 needs --redis: each worker would have its own in-memory sessions")
    where = f"Redis at {args.redis}" if args.redis else "memory"
    print(f"live-session demo (sessions in {where}): open http://{args.host}:{args.port}/ in two tabs", flush=True)
    uvicorn.run(
        "demo:app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
