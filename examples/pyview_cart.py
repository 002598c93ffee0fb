"""A PyView LiveView shopping cart whose contents live in the session, live in every tab.

The example from PhoenixLiveSession's announcement, in Python: the view adds
and removes items through the session, and re-renders whenever the session
changes, from this tab, another tab, another process or a plain HTTP handler
(the "Empty the cart" form below is one). Run it with::

    .venv/bin/python examples/pyview_cart.py          # http://127.0.0.1:8001/

and open it in two tabs.
"""

from __future__ import annotations

import os
from typing import Any

from pyview import LiveView, LiveViewSocket, PyView
from pyview.events import BaseEventHandler, InfoEvent, event, info
from pyview.meta import PyViewMeta
from pyview.template import LiveRender, LiveTemplate, RenderedContent, Template
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from live_session import MemoryStore, Store
from live_session.pyview import install, maybe_subscribe, modify_session

PRODUCTS = ["Sencha", "Assam", "Rooibos", "Stoneware mug", "Gooseneck kettle"]

TEMPLATE = LiveTemplate(
    Template(
        """<main style="font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 2rem auto">
<h1>PyView cart</h1>
<p>Add from here or from another tab; the cart lives in the session.</p>
<ul class="products">{% for product in products %}
<li>{{ product }} <button phx-click="add" phx-value-item="{{ product }}">Add</button></li>{% endfor %}
</ul>
<h2>Cart (<span class="count">{{ count }}</span>, version <span class="version">{{ version }}</span>)</h2>
<ul class="cart">{% for item in cart %}
<li>{{ item }} <button phx-click="remove" phx-value-item="{{ item }}">Remove one</button></li>{% endfor %}
</ul>
<form method="post" action="/empty"><button>Empty the cart (a plain HTTP form)</button></form>
</main>"""
    )
)


class CartView(BaseEventHandler, LiveView[dict[str, Any]]):
    async def mount(self, socket: LiveViewSocket[dict[str, Any]], session: dict[str, Any]) -> None:
        session = await maybe_subscribe(socket, session)
        socket.context = cart_context(session, version=None)

    @event("add")
    async def add(self, event: str, payload: dict[str, Any], socket: LiveViewSocket[dict[str, Any]]) -> None:
        item = str(payload.get("item", ""))
        if item in PRODUCTS:
            # Atomic: two tabs adding at once both count. The view re-renders from the update.
            await modify_session(socket, lambda data: data.setdefault("cart", []).append(item))

    @event("remove")
    async def remove(self, event: str, payload: dict[str, Any], socket: LiveViewSocket[dict[str, Any]]) -> None:
        item = str(payload.get("item", ""))

        def take_one(data: dict[str, Any]) -> None:
            cart = data.get("cart", [])
            if item in cart:
                cart.remove(item)

        await modify_session(socket, take_one)

    @info("live_session_updated")
    async def on_session(self, event: InfoEvent, socket: LiveViewSocket[dict[str, Any]]) -> None:
        update = event.payload
        socket.context = cart_context(update.session, version=update.version)

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> RenderedContent:
        return LiveRender(TEMPLATE, assigns, meta)


def cart_context(session: dict[str, Any], version: int | None) -> dict[str, Any]:
    cart = [item for item in session.get("cart", []) if item in PRODUCTS]
    return {"products": PRODUCTS, "cart": cart, "count": len(cart), "version": "-" if version is None else version}


async def empty_cart(request: Request) -> Response:
    request.session.pop("cart", None)
    return RedirectResponse("/", status_code=303)


def create_app(store: Store | None = None, *, secret_key: str) -> PyView:
    app = PyView(routes=[Route("/empty", empty_cart, methods=["POST"])])
    app.mount("/static", StaticFiles(packages=[("pyview", "static")]), name="static")
    app.add_live_view("/", CartView)
    install(app, secret_key=secret_key, store=store if store is not None else MemoryStore())
    return app


app = create_app(secret_key=os.environ.get("LIVE_SESSION_DEMO_SECRET", "demo-secret-change-me"))

if __name__ == "__main__":
    import uvicorn

    print("PyView cart: open http://127.0.0.1:8001/ in two tabs", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=8001, log_level="warning")
