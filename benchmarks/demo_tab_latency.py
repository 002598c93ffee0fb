"""How long a cart change made in one browser tab takes to show in another tab of the demo shop.

Runs the demo under uvicorn on 127.0.0.1 and drives two tabs of a headless Chromium (the system's,
or LIVE_SESSION_CHROMIUM). Tab A clicks "Add" (or +); a MutationObserver in tab B stamps the
moment its cart region is replaced. Both stamps are `performance.timeOrigin + performance.now()`,
one clock for both tabs. Prints the median, 90th percentile and worst of N changes.

    .venv/bin/python benchmarks/demo_tab_latency.py [--changes 200] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import free_port
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
OBSERVE = """() => { window.stamps = [];
  new MutationObserver(() => window.stamps.push(performance.timeOrigin + performance.now()))
    .observe(document.querySelector('[data-live="cart"]'), {childList: true}); }"""
CLICK = """(selector) => { const t = performance.timeOrigin + performance.now();
  document.querySelector(selector).click(); return t; }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--redis", metavar="URL", help="run the demo on a RedisStore at URL")
    args = parser.parse_args()
    chromium = os.environ.get("LIVE_SESSION_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Chromium: apt-get install chromium, or set LIVE_SESSION_CHROMIUM")
    port = free_port()
    command = [sys.executable, str(ROOT / "examples" / "demo.py"), "--port", str(port)]
    if args.redis:
        command += ["--redis", args.redis]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 - our own demo, fixed arguments
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the demo did not start")
                time.sleep(0.05)  # polling for a port to open, within the deadline
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            context = browser.new_context()
            tab_a, tab_b = context.new_page(), context.new_page()
            for tab in (tab_a, tab_b):
                tab.goto(f"http://127.0.0.1:{port}/")
                expect(tab.locator("#status")).to_have_attribute("data-state", "live")
            tab_b.evaluate(OBSERVE)
            latencies = []
            for n in range(args.changes):
                # Alternate + and - so the cart stays small; each change re-renders tab B's cart.
                selector = '.product[data-product="sencha"] button' if n % 2 == 0 else '.cart button[data-op="remove"]'
                clicked = tab_a.evaluate(CLICK, selector)
                tab_b.wait_for_function("n => window.stamps.length >= n", arg=n + 1)
                latencies.append(tab_b.evaluate("n => window.stamps[n]", n) - clicked)
                expect(
                    tab_a.locator('[data-live="cart"] .empty' if n % 2 else '[data-live="cart"] .line')
                ).to_be_visible()
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    latencies.sort()
    store = "RedisStore" if args.redis else "MemoryStore"
    print(f"demo shop, {store}, {len(latencies)} changes, tab A click -> tab B cart replaced:")
    print(
        f"  median {statistics.median(latencies):.1f} ms, p90 {latencies[int(len(latencies) * 0.9)]:.1f} ms, "
        f"worst {latencies[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
