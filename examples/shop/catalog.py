"""What the demo shop sells, and the rules a cart follows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_QUANTITY", "PRODUCTS", "Product", "cart_lines", "cart_total", "money"]

MAX_QUANTITY = 99


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    blurb: str
    price: int  # cents
    colour: str


PRODUCTS: dict[str, Product] = {
    product.id: product
    for product in [
        Product("sencha", "Sencha", "Grassy Japanese green tea, 100 g", 1250, "#7fb069"),
        Product("assam", "Assam", "Malty breakfast black tea, 250 g", 950, "#a4573b"),
        Product("rooibos", "Rooibos", "Caffeine-free red bush, 150 g", 850, "#d2763f"),
        Product("mug", "Stoneware mug", "Hand-glazed, 350 ml", 1800, "#5b7fc7"),
        Product("kettle", "Gooseneck kettle", "Steady pour, 0.8 l", 4900, "#8c96a3"),
        Product("honey", "Wildflower honey", "Raw, from one valley, 340 g", 1100, "#e0a82e"),
    ]
}


def money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


def cart_lines(cart: Any) -> list[tuple[Product, int]]:
    """The cart's lines in catalogue order, ignoring anything that is not a known product."""
    if not isinstance(cart, Mapping):
        return []
    lines = []
    for product in PRODUCTS.values():
        quantity = cart.get(product.id)
        if isinstance(quantity, int) and quantity > 0:
            lines.append((product, min(quantity, MAX_QUANTITY)))
    return lines


def cart_total(cart: Any) -> int:
    return sum(product.price * quantity for product, quantity in cart_lines(cart))
