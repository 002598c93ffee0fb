"""The demo shop's endpoints refuse bad input without an error, and never redirect off-site."""

from __future__ import annotations

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
    with client.websocket_connect("/live") as ws:
        assert ws.receive_json()["reason"] == "snapshot"
        for text in ["not json", "[1, 2]", '{"op": "add", "product": "nope"}', '{"op": "add", "product": "mug"}']:
            ws.send_text(text)
        update = ws.receive_json()  # only the last message changed anything
        assert update["version"] == 2 and "Stoneware mug" in update["regions"]["cart"]


@pytest.mark.parametrize("raw", ["-1", "abc", "", "1e9", "٣"])
def test_checkout_ignores_quantities_that_are_not_numbers(client: TestClient, raw: str) -> None:
    client.post("/checkout", data={"qty-sencha": "2", "action": "update"})
    response = client.post("/checkout", data={"qty-sencha": raw, "action": "update"})
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


def test_an_oversized_form_is_ignored(client: TestClient) -> None:
    response = client.post("/login", data={"name": "Ada", "padding": "x" * 20_000})
    assert response.status_code == 303 and "Signed in" not in client.get("/").text


def test_logout_leaves_a_fresh_empty_session(client: TestClient) -> None:
    client.post("/login", data={"name": "Ada"})
    client.post("/checkout", data={"qty-mug": "1", "action": "update"})
    logged_in = client.cookies["session"]
    response = client.post("/logout", data={"next": "/checkout"})
    assert response.status_code == 303 and response.headers["location"] == "/checkout"
    assert client.cookies["session"] != logged_in
    assert "Your cart is empty" in stored_cart(client)
