"""The shop's endpoints: live WebSocket views and plain HTTP handlers sharing one session.

- ``GET /`` renders the shop and makes sure the session exists, so the page's
  WebSocket has a session to follow.
- ``/live`` streams the session's updates as re-rendered page regions, and
  applies the page's cart actions with ``modify()``, atomically.
- ``/checkout`` is a classic form page that only uses ``request.session``.
- ``/summary`` is kept up to date by htmx from ``/events``, a server-sent event stream.
- ``/login`` rotates the session id; ``/logout`` destroys the session (every tab
  is told) and starts a fresh one for the tabs to follow.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from live_session import (
    LiveSessionMiddleware,
    SessionNotFound,
    SessionUpdate,
    Store,
    ensure_session,
    live_session,
    session_events,
    stream_session,
)

from .catalog import MAX_QUANTITY, PRODUCTS
from .pages import checkout_page, render_regions, shop_page, summary_page
from .pages import summary as render_summary

__all__ = ["create_app"]

MAX_FORM_BYTES = 16 * 1024
MAX_ORDERS = 20
STEPS = {"add": 1, "increment": 1, "decrement": -1, "remove": -MAX_QUANTITY}


async def shop(request: Request) -> Response:
    await ensure_session(request)
    return HTMLResponse(shop_page(request.session))


async def summary(request: Request) -> Response:
    await ensure_session(request)  # the page's event stream needs a session to follow
    return HTMLResponse(summary_page(request.session))


async def events(request: Request) -> Response:
    """The summary page's server-sent events: the re-rendered table, after every change."""
    return session_events(request, render=lambda update: {"summary": render_summary(update.session)})


async def new_session(request: Request) -> Response:
    """The page calls this when its session is gone for good (it then reconnects)."""
    await ensure_session(request)
    return Response(status_code=204)


async def checkout(request: Request) -> Response:
    if request.method == "GET":
        return HTMLResponse(checkout_page(request.session))
    form = await read_form(request)
    session = request.session
    # Start from the cart as it is now, so what another tab added since this page rendered stays.
    current = session.get("cart")
    cart = {key: value for key, value in current.items() if key in PRODUCTS} if isinstance(current, dict) else {}
    for product_id in PRODUCTS:
        raw = form.get(f"qty-{product_id}", "").strip()
        if raw.isascii() and raw.isdigit():
            quantity = min(int(raw), MAX_QUANTITY)
            if quantity:
                cart[product_id] = quantity
            else:
                cart.pop(product_id, None)
    note = form.get("note", "").strip()[:200]
    if form.get("action") == "order" and cart:
        placed = [order for order in session.get("orders", []) if isinstance(order, dict)]
        total = sum(PRODUCTS[product_id].price * quantity for product_id, quantity in cart.items())
        placed.append({"number": len(placed) + 1, "items": sum(cart.values()), "total": total})
        session["orders"] = placed[-MAX_ORDERS:]
        session.pop("cart", None)
        session.pop("note", None)
    else:
        if cart:
            session["cart"] = cart
        else:
            session.pop("cart", None)
        if note:
            session["note"] = note
        else:
            session.pop("note", None)
    return RedirectResponse("/checkout", status_code=303)


async def login(request: Request) -> Response:
    form = await read_form(request)
    name = " ".join(form.get("name", "").split())[:40]
    if name:
        live = await ensure_session(request)
        # A new id at login, so an id seen before it (a fixated one) is worth nothing.
        await live.regenerate()
        request.session["user"] = name
    return RedirectResponse(back_to(form), status_code=303)


async def logout(request: Request) -> Response:
    form = await read_form(request)
    await live_session(request).destroy()
    # The other tabs were told ``destroyed``; they reconnect to this fresh session.
    await ensure_session(request)
    return RedirectResponse(back_to(form), status_code=303)


async def live(websocket: WebSocket) -> None:
    session = live_session(websocket)

    async def on_message(text: str) -> None:
        try:
            change = cart_change(json.loads(text))
        except ValueError:
            return
        if change is not None:
            # If the session ended meanwhile, the stream is about to say so and close.
            with contextlib.suppress(SessionNotFound):
                await session.modify(change)

    await stream_session(websocket, render=render_update, on_message=on_message)


def render_update(update: SessionUpdate) -> dict[str, Any]:
    """An update as the page applies it: the regions whose keys changed, re-rendered."""
    keys = update.changed | update.removed if update.reason == "updated" else None
    return {"reason": update.reason, "version": update.version, "regions": render_regions(update.session, keys)}


def cart_change(message: Any) -> Callable[[dict[str, Any]], None] | None:
    """``{"op": "add" | "increment" | "decrement" | "remove", "product": id}`` as a change to the session."""
    if not isinstance(message, dict):
        return None
    op, product_id = message.get("op"), message.get("product")
    if not isinstance(op, str) or not isinstance(product_id, str) or op not in STEPS or product_id not in PRODUCTS:
        return None
    step = STEPS[op]

    def change(data: dict[str, Any]) -> None:
        cart = data.get("cart")
        cart = dict(cart) if isinstance(cart, dict) else {}
        current = cart.get(product_id)
        quantity = max(0, min(MAX_QUANTITY, (current if isinstance(current, int) else 0) + step))
        if quantity:
            cart[product_id] = quantity
        else:
            cart.pop(product_id, None)
        if cart:
            data["cart"] = cart
        else:
            data.pop("cart", None)

    return change


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (read without python-multipart, which Starlette's parser needs)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}


def back_to(form: dict[str, str]) -> str:
    return form["next"] if form.get("next") in ("/", "/checkout") else "/"


def create_app(store: Store | None = None, *, secret_key: str) -> Starlette:
    return Starlette(
        routes=[
            Route("/", shop),
            Route("/session", new_session, methods=["POST"]),
            Route("/checkout", checkout, methods=["GET", "POST"]),
            Route("/summary", summary),
            Route("/events", events),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            WebSocketRoute("/live", live),
            Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
        ],
        middleware=[Middleware(LiveSessionMiddleware, secret_key=secret_key, store=store)],
    )
