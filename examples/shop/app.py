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

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
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
    StoreUnavailable,
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
MAX_MESSAGE_CHARS = 1024
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


async def checkout(request: Request) -> Response:
    if request.method == "GET":
        notice = (
            "Your cart changed in another tab. Check it, then place the order again."
            if "changed" in (request.query_params)
            else ""
        )
        page = checkout_page(request.session, version=live_session(request).version, notice=notice)
        # Always fetched afresh (the Back button too), so a form never starts from an old cart.
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})
    form = await read_form(request)
    session = request.session
    current = session.get("cart")
    cart = {key: value for key, value in current.items() if key in PRODUCTS} if isinstance(current, dict) else {}
    if form.get("action") == "order":
        # Only the cart this form showed may be ordered: not one changed since, nor the same one twice.
        if form.get("version") != str(live_session(request).version) or not cart:
            return RedirectResponse("/checkout?changed", status_code=303)
        placed = [order for order in session.get("orders", []) if isinstance(order, dict)]
        number = int(placed[-1].get("number", 0)) + 1 if placed else 1
        total = sum(PRODUCTS[product_id].price * quantity for product_id, quantity in cart.items())
        session["orders"] = [*placed, {"number": number, "items": sum(cart.values()), "total": total}][-MAX_ORDERS:]
        session.pop("cart", None)
        session.pop("note", None)
        return RedirectResponse("/checkout", status_code=303)
    # Apply only the fields changed on this page, so what other tabs did since it rendered stays.
    for product_id in PRODUCTS:
        quantity = form_quantity(form.get(f"qty-{product_id}"))
        if quantity is None or quantity == form_quantity(form.get(f"was-qty-{product_id}")):
            continue
        if quantity:
            cart[product_id] = quantity
        else:
            cart.pop(product_id, None)
    if cart:
        session["cart"] = cart
    else:
        session.pop("cart", None)
    note = form.get("note", "").strip()[:200]
    if note != form.get("was-note", "").strip()[:200]:
        if note:
            session["note"] = note
        else:
            session.pop("note", None)
    return RedirectResponse("/checkout", status_code=303)


def form_quantity(raw: str | None) -> int | None:
    """A quantity typed into the form, or None if it is not a small whole number."""
    raw = (raw or "").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
        return None
    return min(int(raw), MAX_QUANTITY)


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
        if len(text) > MAX_MESSAGE_CHARS:
            return
        try:
            change = cart_change(json.loads(text))
        except (ValueError, RecursionError):
            return
        if change is None:
            return
        try:
            await session.modify(change)
        except SessionNotFound:
            pass  # it ended meanwhile: the stream is about to say so and close
        except StoreUnavailable:
            # Nothing was stored. Closing tells the page it is offline; it reconnects once the store is back.
            await websocket.close(1013, "store unavailable")

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
    """A small urlencoded form from this site (read without python-multipart, which Starlette's parser needs)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        # Another site's page posting here: it could sign the visitor in or out, or change their cart.
        raise HTTPException(403, "Cross-site form refused")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "Form too large")
    return {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}


def back_to(form: dict[str, str]) -> str:
    return form["next"] if form.get("next") in ("/", "/checkout") else "/"


def create_app(store: Store | None = None, *, secret_key: str) -> Starlette:
    return Starlette(
        routes=[
            Route("/", shop),
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
