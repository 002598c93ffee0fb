"""The demo shop end to end: real uvicorn servers on 127.0.0.1, driven by a real headless Chromium.

Tabs of one browser context share its cookie jar, as tabs and windows of one
browser profile do. Every wait is Playwright's ``expect``, which polls the page
until the condition holds or its timeout passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .browser import WAIT_MS, launch_chromium
from .conftest import REDIS_NAMES, RedisServers
from .servers import ROOT, demo_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_server(tmp_path_factory.mktemp("shop")) as address:
        yield f"http://{address}"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile: its own cookie jar, so its own session."""
    fresh = browser.new_context(viewport={"width": 1200, "height": 760})
    fresh.set_default_timeout(WAIT_MS)
    yield fresh
    fresh.close()


def open_shop(context: BrowserContext, url: str) -> Page:
    """A new tab on the shop, once its live connection is up."""
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    return page


def session_id(context: BrowserContext) -> str:
    (cookie,) = [cookie for cookie in context.cookies() if cookie["name"] == "session"]
    return cookie["value"].split(".")[0]


def test_tabs_and_windows_share_one_live_cart(context: BrowserContext, shop: str) -> None:
    first = open_shop(context, shop)
    tabs = [first, open_shop(context, shop), open_shop(context, shop)]

    first.click('.product[data-product="sencha"] button[data-op="add"]')
    for tab in tabs:
        expect(tab.locator('.cart .line[data-product="sencha"] output')).to_have_text("1", timeout=WAIT_MS)

    tabs[1].click('.cart button[data-op="increment"][data-product="sencha"]')
    tabs[2].click('.product[data-product="kettle"] button[data-op="add"]')
    for tab in tabs:
        expect(tab.locator('.cart .line[data-product="sencha"] output')).to_have_text("2", timeout=WAIT_MS)
        expect(tab.locator('.cart .line[data-product="kettle"] output')).to_have_text("1", timeout=WAIT_MS)
        expect(tab.locator(".cart .total")).to_contain_text("$74.00", timeout=WAIT_MS)
        expect(tab.locator('.product[data-product="sencha"] .in-cart')).to_have_text("2 in cart", timeout=WAIT_MS)

    tabs[2].click('.cart button[data-op="remove"][data-product="sencha"]')
    tabs[0].click('.cart button[data-op="decrement"][data-product="kettle"]')
    for tab in tabs:
        expect(tab.locator(".cart .empty")).to_have_text("Your cart is empty.", timeout=WAIT_MS)

    # A reload renders the same state on the server.
    tabs[1].reload()
    expect(tabs[1].locator(".cart .empty")).to_be_visible()


def test_the_plain_form_page_changes_every_live_tab(context: BrowserContext, shop: str) -> None:
    live = open_shop(context, shop)
    live.click('.product[data-product="honey"] button[data-op="add"]')
    expect(live.locator('.cart .line[data-product="honey"] output')).to_have_text("1")

    checkout = context.new_page()
    checkout.goto(f"{shop}/checkout")
    assert checkout.locator("script").count() == 0  # a classic page: no JavaScript at all
    checkout.fill('input[name="qty-honey"]', "3")
    checkout.fill('textarea[name="note"]', "Leave it with <the neighbours>")
    checkout.click('button[value="update"]')
    expect(checkout.locator("tfoot")).to_contain_text("$33.00")  # rendered by the server after the POST
    expect(live.locator('.cart .line[data-product="honey"] output')).to_have_text("3", timeout=WAIT_MS)
    expect(live.locator(".cart .note")).to_have_text("Note: Leave it with <the neighbours>", timeout=WAIT_MS)

    # The cart changes in a live tab after the form page rendered: that page may not order the cart
    # it showed, so it shows the new one and asks again.
    live.click('.product[data-product="mug"] button[data-op="add"]')
    expect(live.locator('.cart .line[data-product="mug"] output')).to_have_text("1")
    checkout.click('button[value="order"]')
    expect(checkout.locator(".notice")).to_contain_text("Your cart changed in another tab")
    expect(checkout.locator('input[name="qty-mug"]')).to_have_value("1")
    checkout.click('button[value="order"]')
    expect(checkout.locator(".orders li")).to_have_text(["Order 1: 4 items, $51.00"])
    expect(live.locator(".cart .empty")).to_be_visible(timeout=WAIT_MS)
    expect(live.locator(".orders li")).to_have_text(["Order 1: 4 items, $51.00"], timeout=WAIT_MS)


def test_the_htmx_page_follows_the_session_over_server_sent_events(context: BrowserContext, shop: str) -> None:
    live = open_shop(context, shop)
    summary = context.new_page()
    summary.goto(f"{shop}/summary")
    expect(summary.locator(".card .empty")).to_be_visible()
    # The stream starts with a snapshot, so a change made before it is connected shows up as well.
    live.click('.product[data-product="kettle"] button[data-op="add"]')
    expect(summary.locator('tr[data-product="kettle"] .qty')).to_have_text("1", timeout=WAIT_MS)
    live.click('.cart button[data-op="increment"][data-product="kettle"]')
    expect(summary.locator('tr[data-product="kettle"] .qty')).to_have_text("2", timeout=WAIT_MS)
    expect(summary.locator("tfoot")).to_contain_text("$98.00")

    # Sign out in the shop tab: the stream ends with the session, and EventSource reconnects to the new one.
    live.fill('input[name="name"]', "Ada")
    live.click(".signin button")
    expect(live.locator(".account .who")).to_have_text("Signed in as Ada")
    live.click('.account button:has-text("Sign out")')
    expect(summary.locator(".card .empty")).to_be_visible(timeout=WAIT_MS)
    expect(live.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    live.click('.product[data-product="honey"] button[data-op="add"]')
    expect(summary.locator('tr[data-product="honey"] .qty')).to_have_text("1", timeout=WAIT_MS)


def test_login_rotates_the_id_and_logout_ends_the_session_in_every_tab(context: BrowserContext, shop: str) -> None:
    here, there = open_shop(context, shop), open_shop(context, shop)
    here.click('.product[data-product="assam"] button[data-op="add"]')
    expect(there.locator('.cart .line[data-product="assam"] output')).to_have_text("1", timeout=WAIT_MS)
    anonymous_id = session_id(context)

    here.fill('input[name="name"]', "Ada")
    here.click(".signin button")
    expect(here.locator(".account .who")).to_have_text("Signed in as Ada")
    # The other tab's connection ended with the old id; it reconnects with the new cookie.
    expect(there.locator(".account .who")).to_have_text("Signed in as Ada", timeout=WAIT_MS)
    expect(there.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(there.locator('.cart .line[data-product="assam"] output')).to_have_text("1")
    logged_in_id = session_id(context)
    assert logged_in_id != anonymous_id

    # It follows the new id: a change made there reaches here.
    there.click('.product[data-product="rooibos"] button[data-op="add"]')
    expect(here.locator('.cart .line[data-product="rooibos"] output')).to_have_text("1", timeout=WAIT_MS)

    there.click('.account button:has-text("Sign out")')
    for tab in (here, there):
        expect(tab.locator(".signin input[name='name']")).to_be_visible(timeout=WAIT_MS)
        expect(tab.locator(".cart .empty")).to_be_visible(timeout=WAIT_MS)
        expect(tab.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    assert session_id(context) not in (anonymous_id, logged_in_id)

    # Both tabs now follow the same fresh session.
    here.click('.product[data-product="mug"] button[data-op="add"]')
    expect(there.locator('.cart .line[data-product="mug"] output')).to_have_text("1", timeout=WAIT_MS)


def test_a_tab_waits_for_the_new_cookie_on_a_slow_sign_in(context: BrowserContext, tmp_path: Path) -> None:
    with demo_server(tmp_path, "slow_login_demo:create", ROOT / "tests") as address:
        here, there = open_shop(context, f"http://{address}"), open_shop(context, f"http://{address}")
        here.fill('input[name="name"]', "Ada")
        here.click(".signin button")
        # For 1.5 s the other tab's cookie names a session id that no longer exists. It must keep
        # retrying until the new cookie lands, not start a session of its own (which it would then
        # follow for good, apart from the signed-in one).
        expect(there.locator(".account .who")).to_have_text("Signed in as Ada", timeout=WAIT_MS)
        expect(here.locator(".account .who")).to_have_text("Signed in as Ada", timeout=WAIT_MS)
        there.click('.product[data-product="mug"] button[data-op="add"]')
        expect(here.locator('.cart .line[data-product="mug"] output')).to_have_text("1", timeout=WAIT_MS)


def test_another_browser_has_its_own_cart(browser: Browser, context: BrowserContext, shop: str) -> None:
    mine = open_shop(context, shop)
    mine.click('.product[data-product="kettle"] button[data-op="add"]')
    expect(mine.locator('.cart .line[data-product="kettle"] output')).to_have_text("1")
    stranger = browser.new_context()
    try:
        theirs = open_shop(stranger, shop)
        expect(theirs.locator(".cart .empty")).to_be_visible()
        assert session_id(stranger) != session_id(context)
    finally:
        stranger.close()


@pytest.fixture
def one_redis(redis_servers: RedisServers) -> str:
    """The newest Redis found (these tests are slow enough to run on one)."""
    server = redis_servers.get(max(REDIS_NAMES))
    server.flushall()
    return server.url


def test_two_demo_processes_on_one_redis(context: BrowserContext, one_redis: str, tmp_path: Path) -> None:
    with (
        demo_server(tmp_path, LIVE_SESSION_REDIS=one_redis) as server_a,
        demo_server(tmp_path, LIVE_SESSION_REDIS=one_redis) as server_b,
    ):
        # Cookies belong to a host, not a port: both processes see the same cookie.
        on_a = open_shop(context, f"http://{server_a}")
        on_b = open_shop(context, f"http://{server_b}")
        on_a.click('.product[data-product="sencha"] button[data-op="add"]')
        expect(on_b.locator('.cart .line[data-product="sencha"] output')).to_have_text("1", timeout=WAIT_MS)
        on_b.click('.cart button[data-op="increment"][data-product="sencha"]')
        expect(on_a.locator('.cart .line[data-product="sencha"] output')).to_have_text("2", timeout=WAIT_MS)

        checkout = context.new_page()
        checkout.goto(f"http://{server_b}/checkout")
        checkout.fill('input[name="qty-sencha"]', "5")
        checkout.click('button[value="update"]')
        expect(on_a.locator('.cart .line[data-product="sencha"] output')).to_have_text("5", timeout=WAIT_MS)

        on_b.fill('input[name="name"]', "Grace")
        on_b.click(".signin button")
        expect(on_a.locator(".account .who")).to_have_text("Signed in as Grace", timeout=WAIT_MS)


def test_screenshot_for_the_docs(context: BrowserContext, shop: str, tmp_path: Path) -> None:
    """The picture in README. ``UPDATE_SCREENSHOT=1 scripts/test -k screenshot`` refreshes docs/demo.png."""
    page = open_shop(context, shop)
    page.fill('input[name="name"]', "Ada")
    page.click(".signin button")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    for product, times in (("sencha", 2), ("mug", 1), ("honey", 1)):
        for _ in range(times):
            page.click(f'.product[data-product="{product}"] button[data-op="add"]')
    expect(page.locator(".cart .total")).to_contain_text("$54.00", timeout=WAIT_MS)
    expect(page.locator('.product[data-product="sencha"] .in-cart')).to_have_text("2 in cart")
    target = ROOT / "docs" / "demo.png" if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "demo.png"
    page.screenshot(path=str(target))
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
