"""The shop's HTML, rendered from a session's contents.

Each live region of the shop page is one function of the session, so the page
an HTTP handler serves and the updates the WebSocket pushes come from the same
code. Everything taken from the session is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

from .catalog import PRODUCTS, cart_lines, cart_total, money

__all__ = ["REGIONS", "checkout_page", "render_regions", "shop_page", "summary", "summary_page"]

Session = Mapping[str, Any]


def account(session: Session, back_to: str = "/") -> str:
    user = session.get("user")
    hidden = f'<input type="hidden" name="next" value="{escape(back_to)}">'
    if isinstance(user, str):
        return (
            f'<span class="who">Signed in as <strong>{escape(user)}</strong></span>'
            f'<form method="post" action="/logout">{hidden}<button class="quiet">Sign out</button></form>'
        )
    return (
        f'<form class="signin" method="post" action="/login">{hidden}'
        '<input name="name" placeholder="Your name" aria-label="Your name" maxlength="40" required autocomplete="off">'
        "<button>Sign in</button></form>"
    )


def products(session: Session) -> str:
    in_cart = dict((product.id, quantity) for product, quantity in cart_lines(session.get("cart")))
    cards = []
    for product in PRODUCTS.values():
        count = in_cart.get(product.id)
        badge = f'<span class="in-cart">{count} in cart</span>' if count else ""
        cards.append(
            f'<article class="product" data-product="{product.id}">'
            f'<div class="swatch" style="background:{product.colour}"></div>'
            f"<h3>{escape(product.name)}</h3><p>{escape(product.blurb)}</p>"
            f'<div class="buy"><span class="price">{money(product.price)}</span>{badge}'
            f'<button data-op="add" data-product="{product.id}">Add</button></div></article>'
        )
    return "".join(cards)


def cart(session: Session) -> str:
    lines = cart_lines(session.get("cart"))
    note = session.get("note")
    note_html = f'<p class="note">Note: {escape(note)}</p>' if isinstance(note, str) and note else ""
    if not lines:
        return f'<h2>Your cart</h2><p class="empty">Your cart is empty.</p>{note_html}'
    count = sum(quantity for _, quantity in lines)
    rows = "".join(
        f'<li class="line" data-product="{product.id}">'
        f'<span class="dot" style="background:{product.colour}"></span>'
        f'<span class="name">{escape(product.name)}</span>'
        f'<span class="qty"><button data-op="decrement" data-product="{product.id}" '
        f'aria-label="One less {escape(product.name)}">&minus;</button>'
        f'<output>{quantity}</output><button data-op="increment" data-product="{product.id}" '
        f'aria-label="One more {escape(product.name)}">+</button></span>'
        f'<span class="amount">{money(product.price * quantity)}</span>'
        f'<button class="remove" data-op="remove" data-product="{product.id}" '
        f'aria-label="Remove {escape(product.name)}">&times;</button></li>'
        for product, quantity in lines
    )
    return (
        f'<h2>Your cart <span class="count">{plural(count, "item")}</span></h2>'
        f'<ul class="lines">{rows}</ul>'
        f'<p class="total">Subtotal <strong>{money(cart_total(session.get("cart")))}</strong></p>'
        f'{note_html}<a class="button" href="/checkout">Check out</a>'
    )


def orders(session: Session) -> str:
    placed = [order for order in session.get("orders", []) if isinstance(order, dict)]
    if not placed:
        return ""
    items = "".join(
        f"<li>Order {escape(str(order.get('number')))}: {plural(order.get('items'), 'item')}, "
        f"{money(int(order.get('total', 0)))}</li>"
        for order in reversed(placed)
    )
    return f'<h2>Your orders</h2><ol class="orders">{items}</ol>'


def plural(count: object, noun: str) -> str:
    return f"{escape(str(count))} {noun}{'' if count == 1 else 's'}"


# Region name -> (renderer, the session keys it shows). An update re-renders
# only the regions whose keys it changed.
REGIONS: dict[str, tuple[Callable[[Session], str], frozenset[str]]] = {
    "account": (account, frozenset({"user"})),
    "products": (products, frozenset({"cart"})),
    "cart": (cart, frozenset({"cart", "note"})),
    "orders": (orders, frozenset({"orders"})),
}


def render_regions(session: Session, keys: frozenset[str] | None = None) -> dict[str, str]:
    """The regions that show any of ``keys`` (all of them when ``keys`` is None)."""
    return {name: render(session) for name, (render, shown) in REGIONS.items() if keys is None or shown & keys}


NAV = '<nav><a href="/">Shop</a><a href="/checkout">Checkout</a><a href="/summary">Summary</a></nav>'


def layout(title: str, session: Session, back_to: str, body: str, *, head: str = "", status: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/shop.css">{head}</head>
<body>
<header><a class="brand" href="/">Leaf &amp; Kettle</a>{status}{NAV}
<div class="account" data-live="account">{account(session, back_to)}</div></header>
<main>{body}</main>
<footer>A <a href="https://pypi.org/project/live-session/">live-session</a> demo. Open it in two tabs or
windows: a change made in one, over the WebSocket or with a plain form, shows up in all of them.</footer>
</body></html>"""


def shop_page(session: Session) -> str:
    regions = render_regions(session)
    body = f"""<section class="catalogue"><h1>Teas and things to brew them with</h1>
<div class="grid" data-live="products">{regions["products"]}</div></section>
<aside><div class="cart" data-live="cart">{regions["cart"]}</div>
<div data-live="orders">{regions["orders"]}</div></aside>"""
    return layout(
        "Leaf & Kettle: live-session demo",
        session,
        "/",
        body,
        head='<script src="/static/shop.js" defer></script>',
        status='<span id="status" class="status" data-state="connecting" title="The live connection">connecting</span>',
    )


def checkout_page(session: Session, *, version: int, notice: str = "") -> str:
    """The classic form. Hidden fields carry what it showed, so the handler applies only what was changed."""
    lines = cart_lines(session.get("cart"))
    rows = "".join(
        f"<tr><td>{escape(product.name)}</td><td>{money(product.price)}</td>"
        f'<td><input type="number" name="qty-{product.id}" value="{quantity}" min="0" max="99" '
        f'aria-label="Quantity of {escape(product.name)}">'
        f'<input type="hidden" name="was-qty-{product.id}" value="{quantity}"></td>'
        f"<td>{money(product.price * quantity)}</td></tr>"
        for product, quantity in lines
    )
    note = session.get("note")
    note_text = escape(note) if isinstance(note, str) else ""
    table = (
        f"<table><thead><tr><th>Item</th><th>Price</th><th>Quantity</th><th>Amount</th></tr></thead>"
        f'<tbody>{rows}</tbody><tfoot><tr><td colspan="3">Subtotal</td>'
        f"<td>{money(cart_total(session.get('cart')))}</td></tr></tfoot></table>"
        if lines
        else '<p class="empty">Your cart is empty.</p>'
    )
    order_button = '<button name="action" value="order">Place order</button>' if lines else ""
    body = f"""<section class="checkout"><h1>Checkout</h1>
<p class="hint">This page is plain HTML: no JavaScript and no WebSocket. Its form is handled by an ordinary
Starlette endpoint through <code>request.session</code>, and every change it makes shows up live in the shop's
other tabs.</p>
{f'<p class="notice">{escape(notice)}</p>' if notice else ""}
<form method="post" action="/checkout">{table}<input type="hidden" name="version" value="{version}">
<input type="hidden" name="was-note" value="{note_text}">
<label>Note for the courier <textarea name="note" maxlength="200" rows="2">{note_text}</textarea></label>
<div class="actions"><button name="action" value="update" class="quiet">Update cart</button>{order_button}</div>
</form><p><a href="/">&larr; Back to the shop</a></p></section>
<aside>{orders(session)}</aside>"""
    return layout(
        "Checkout: live-session demo",
        session,
        "/checkout",
        body,
        status='<span class="status static">plain HTML</span>',
    )


def summary(session: Session) -> str:
    """The cart as a read-only table: what the summary page's event stream swaps in."""
    lines = cart_lines(session.get("cart"))
    if not lines:
        return '<p class="empty">Your cart is empty.</p>'
    rows = "".join(
        f'<tr data-product="{product.id}"><td>{escape(product.name)}</td><td class="qty">{quantity}</td>'
        f"<td>{money(product.price * quantity)}</td></tr>"
        for product, quantity in lines
    )
    return (
        f"<table><thead><tr><th>Item</th><th>Quantity</th><th>Amount</th></tr></thead><tbody>{rows}</tbody>"
        f'<tfoot><tr><td colspan="2">Subtotal</td><td>{money(cart_total(session.get("cart")))}</td></tr></tfoot>'
        "</table>"
    )


def summary_page(session: Session) -> str:
    body = f"""<section class="checkout"><h1>Cart summary</h1>
<p class="hint">This page has no JavaScript of its own. htmx's server-sent events extension swaps in the table
that the server streams from <code>session_events()</code> whenever the session changes.</p>
<div class="card" hx-ext="sse" sse-connect="/events" sse-swap="summary">{summary(session)}</div>
<p><a href="/">&larr; Back to the shop</a></p></section>"""
    return layout(
        "Summary: live-session demo",
        session,
        "/summary",
        body,
        head='<script src="/static/vendor/htmx-2.0.11.min.js" defer></script>'
        '<script src="/static/vendor/htmx-ext-sse-2.2.4.js" defer></script>',
        status='<span class="status static">htmx + server-sent events</span>',
    )
