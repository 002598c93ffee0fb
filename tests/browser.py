"""A real headless Chromium for the end-to-end tests, driven by Playwright.

Playwright's own browser download is not used: the tests drive the system's
Chromium (Debian's ``chromium`` package, which ``.ci/run`` installs), or the
one ``LIVE_SESSION_CHROMIUM`` names.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .conftest import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM_ARGS", "WAIT_MS", "find_chromium", "launch_chromium"]

WAIT_MS = 5_000  # how long a change may take to show up in a page before a test fails

# Root in a container needs --no-sandbox; the rest keeps Chromium from calling home,
# which a closed network refuses (slowly).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def find_chromium() -> str | None:
    configured = os.environ.get("LIVE_SESSION_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """A headless Chromium for one test module (skipped, or failed under CI=true, where there is none)."""
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        chromium = None
    if chromium is None:
        skip_or_fail(
            "browser tests need Chromium and Playwright: `apt-get install chromium` "
            "(or set LIVE_SESSION_CHROMIUM to a Chromium binary) and `scripts/test` to install Playwright"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
