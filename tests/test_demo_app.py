"""The demo shop's endpoints refuse bad input without an error, and never redirect off-site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from shop import create_app
from shop.app import cart_change
from starlette.testclient import TestClient

from live_session import MemoryStore

from .conftest import SECRET


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(MemoryStore(), secret_key=SECRET), follow_redirects=False) as test_client:
        test_client.get("/")
        yield test_client


def stored_cart(client: TestClient) -> Any:
    with client.websocket_connect("/live") as ws:
        return ws.receive_json()["regions"]["cart"]


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        "add",
        {"op": "add"},
        {"op": "add", "product": "unknown"},
        {"op": "steal", "product": "mug"},
        {"op": "add", "product": ["mug"]},
    ],
)
def test_unknown_actions_change_nothing(message: Any) -> None:
    assert cart_change(message) is None


def test_live_actions_clamp_quantities() -> None:
    data: dict[str, Any] = {"cart": {"mug": 99}}
    add = cart_change({"op": "add", "product": "mug"})
    assert add is not None
    add(data)
    assert data == {"cart": {"mug": 99}}
    remove = cart_change({"op": "remove", "product": "mug"})
    assert remove is not None
    remove(data)
    assert data == {}


def test_bad_websocket_messages_are_ignored(client: TestClient) -> None:
    bad = [
        "not json",
        "[1, 2]",
        '{"op": "add", "product": "nope"}',
        "[" * 100_000,
        '{"op": "add", "product": "mug", "x": "' + "y" * 2000 + '"}',
    ]
    with client.websocket_connect("/live") as ws:
        assert ws.receive_json()["reason"] == "snapshot"
        for text in [*bad, '{"op": "add", "product": "mug"}']:
            ws.send_text(text)
        update = ws.receive_json()  # only the last message changed anything
        assert update["version"] == 2 and "Stoneware mug" in update["regions"]["cart"]


@pytest.mark.parametrize("raw", ["-1", "abc", "", "1e9", "٣", "9" * 5000])
def test_checkout_ignores_quantities_that_are_not_numbers(client: TestClient, raw: str) -> None:
    client.post("/checkout", data={"qty-sencha": "2", "action": "update"})
    response = client.post("/checkout", data={"qty-sencha": raw, "was-qty-sencha": "2", "action": "update"})
    assert response.status_code == 303
    assert 'name="qty-sencha" value="2"' in client.get("/checkout").text


def test_checkout_caps_quantities_and_escapes_the_note(client: TestClient) -> None:
    client.post("/checkout", data={"qty-mug": "500", "note": "<script>x</script>", "action": "update"})
    page = client.get("/checkout").text
    assert 'name="qty-mug" value="99"' in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/checkout/../x", ""])
def test_login_never_redirects_elsewhere(client: TestClient, target: str) -> None:
    response = client.post("/login", data={"name": "Ada", "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_blank_name_does_not_log_in(client: TestClient) -> None:
    before = client.cookies["session"]
    client.post("/login", data={"name": "   "})
    assert client.cookies["session"] == before
    assert "Signed in" not in client.get("/").text


def test_an_oversized_form_is_refused(client: TestClient) -> None:
    client.post("/checkout", data={"note": "keep me", "action": "update"})
    response = client.post("/checkout", data={"note": "", "padding": "x" * 20_000, "action": "update"})
    assert response.status_code == 413
    assert "keep me" in client.get("/checkout").text


@pytest.mark.parametrize("path", ["/login", "/logout", "/checkout"])
def test_forms_posted_from_another_site_are_refused(client: TestClient, path: str) -> None:
    response = client.post(
        path, data={"name": "Mallory", "action": "update"}, headers={"origin": "https://evil.example"}
    )
    assert response.status_code == 403
    same_site = client.post(path, data={"name": "Ada", "action": "update"}, headers={"origin": "http://testserver"})
    assert same_site.status_code == 303


def checkout_form(client: TestClient) -> dict[str, str]:
    """The checkout form's fields, as the page rendered them."""
    page = client.get("/checkout")
    assert page.headers["cache-control"] == "no-store"
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    fields["note"] = re.search(r'<textarea name="note"[^>]*>([^<]*)</textarea>', page.text).group(1)  # type: ignore[union-attr]
    return fields


def test_a_stale_checkout_form_changes_only_what_it_changed(client: TestClient) -> None:
    client.post("/checkout", data={"qty-sencha": "2", "qty-mug": "1", "action": "update"})
    stale = checkout_form(client)
    with client.websocket_connect("/live") as ws:  # meanwhile, another tab removes the mug and adds honey
        ws.receive_json()
        ws.send_text('{"op": "remove", "product": "mug"}')
        ws.receive_json()
        ws.send_text('{"op": "add", "product": "honey"}')
        ws.receive_json()
    client.post("/checkout", data={**stale, "qty-sencha": "3", "note": "ring twice", "action": "update"})
    form = checkout_form(client)
    assert form["qty-sencha"] == "3" and form["qty-honey"] == "1" and "qty-mug" not in form
    assert form["note"] == "ring twice"


def test_an_order_is_placed_once_and_only_for_the_cart_shown(client: TestClient) -> None:
    client.post("/checkout", data={"qty-assam": "2", "action": "update"})
    form = checkout_form(client)
    first = client.post("/checkout", data={**form, "action": "order"})
    again = client.post("/checkout", data={**form, "action": "order"})  # a double submit
    assert first.headers["location"] == "/checkout" and again.headers["location"] == "/checkout?changed"
    page = client.get("/checkout").text
    assert page.count("<li>Order ") == 1 and "Order 1: 2 items, $19.00" in page

    client.post("/checkout", data={"qty-mug": "1", "action": "update"})
    stale = checkout_form(client)
    client.post("/checkout", data={"qty-kettle": "1", "action": "update"})  # the cart changes elsewhere
    assert client.post("/checkout", data={**stale, "action": "order"}).headers["location"] == "/checkout?changed"
    assert "Your cart changed in another tab" in client.get("/checkout?changed").text


def test_order_numbers_keep_counting_past_the_ones_kept(client: TestClient) -> None:
    for _ in range(22):
        client.post("/checkout", data={"qty-honey": "1", "action": "update"})
        client.post("/checkout", data={**checkout_form(client), "action": "order"})
    page = client.get("/checkout").text
    assert "Order 22: 1 item, $11.00" in page and "Order 3:" in page and "Order 2:" not in page


def test_logout_leaves_a_fresh_empty_session(client: TestClient) -> None:
    client.post("/login", data={"name": "Ada"})
    client.post("/checkout", data={"qty-mug": "1", "action": "update"})
    logged_in = client.cookies["session"]
    response = client.post("/logout", data={"next": "/checkout"})
    assert response.status_code == 303 and response.headers["location"] == "/checkout"
    assert client.cookies["session"] != logged_in
    assert "Your cart is empty" in stored_cart(client)
