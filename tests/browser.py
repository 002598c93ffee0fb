"""A real headless Chromium for the end-to-end tests, driven by Playwright.

Playwright's own browser download is not used: the tests drive the system's
Chromium (Debian's ``chromium`` package, which ``.ci/run`` installs), or the
one ``LIVE_SESSION_CHROMIUM`` names.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["CHROMIUM_ARGS", "find_chromium"]

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
