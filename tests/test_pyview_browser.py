"""The PyView example cart in a real headless Chromium, with PyView's own JavaScript client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .browser import WAIT_MS, launch_chromium
from .servers import demo_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def cart_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_server(tmp_path_factory.mktemp("pyview"), app="pyview_cart:app") as address:
        yield f"http://{address}"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    fresh = browser.new_context()
    fresh.set_default_timeout(WAIT_MS)
    yield fresh
    fresh.close()


def open_view(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url)
    expect(page.locator("[data-phx-main].phx-connected")).to_have_count(1, timeout=WAIT_MS)
    return page


def test_two_tabs_of_a_liveview_share_the_session(context: BrowserContext, cart_app: str) -> None:
    a, b = open_view(context, cart_app), open_view(context, cart_app)
    a.click('button[phx-value-item="Sencha"]')
    expect(b.locator(".count")).to_have_text("1", timeout=WAIT_MS)
    b.click('button[phx-value-item="Assam"]')
    expect(a.locator(".count")).to_have_text("2", timeout=WAIT_MS)
    expect(a.locator(".cart li")).to_have_count(2)

    # A plain HTTP form empties the cart, which ends the session (an empty session is not kept, as in
    # Starlette). The other tab's view is told, reconnects with the cookie of the new session that
    # tab b's reload created, and follows it.
    b.click("text=Empty the cart")
    expect(a.locator(".count")).to_have_text("0", timeout=WAIT_MS)
    expect(b.locator("[data-phx-main].phx-connected")).to_have_count(1, timeout=WAIT_MS)
    b.click('button[phx-value-item="Rooibos"]')
    expect(a.locator(".count")).to_have_text("1", timeout=WAIT_MS)
    a.click('button[phx-value-item="Assam"]')
    expect(b.locator(".count")).to_have_text("2", timeout=WAIT_MS)
