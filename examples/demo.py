"""Run the live-session demo: Leaf & Kettle, a small shop whose cart is shown live in every tab.

The app itself is the ``shop`` package next to this file. Run it with ``scripts/demo``
(``--host``, ``--port``, ``--redis URL``, ``--workers N``). Processes started separately against
one Redis share sessions and accept each other's cookies when they share
``LIVE_SESSION_DEMO_SECRET`` (a fixed demo default otherwise).
"""

from __future__ import annotations

import argparse
import os

from shop import create_app

from live_session import MemoryStore, Store

SECRET_KEY = os.environ.get("LIVE_SESSION_DEMO_SECRET", "demo-secret-change-me")


def store_from_environment() -> Store:
    """``LIVE_SESSION_REDIS=redis://...`` puts sessions in Redis, shared by every demo process."""
    url = os.environ.get("LIVE_SESSION_REDIS")
    if url:
        from live_session import RedisStore

        return RedisStore(url)
    return MemoryStore()


app = create_app(store_from_environment(), secret_key=SECRET_KEY)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the live-session demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", metavar="URL", help="keep sessions in Redis, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs --redis to share sessions)")
    args = parser.parse_args()
    if args.redis:
        os.environ["LIVE_SESSION_REDIS"] = args.redis
    elif args.workers > 1:
        parser.error("--workers above 1 needs --redis: each worker would have its own in-memory sessions")
    where = f"Redis at {args.redis}" if args.redis else "memory"
    print(f"live-session demo (sessions in {where}): open http://{args.host}:{args.port}/ in two tabs", flush=True)
    uvicorn.run(
        "demo:app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
