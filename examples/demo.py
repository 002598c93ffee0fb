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
from starlette.applications import Starlette

from live_session import MemoryStore, Store

SECRET_KEY = os.environ.get("LIVE_SESSION_DEMO_SECRET", "demo-secret-change-me")


def store_from_environment() -> Store:
    """``LIVE_SESSION_REDIS=redis://...`` puts sessions in Redis, shared by every demo process."""
    url = os.environ.get("LIVE_SESSION_REDIS")
    if url:
        from live_session import RedisStore

        return RedisStore(url)
    return MemoryStore()


def create() -> Starlette:
    """The app, as uvicorn's factory: each worker process builds its own (``uvicorn --factory demo:create``)."""
    return create_app(store_from_environment(), secret_key=SECRET_KEY)


def check_redis(parser: argparse.ArgumentParser, url: str) -> None:
    """Fail at once, with a clear message, if Redis is not there (rather than 503s on every page)."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except (redis.RedisError, ValueError) as error:
        parser.error(f"cannot reach Redis at {url}: {error}")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the live-session demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", metavar="URL", help="keep sessions in Redis, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (needs --redis to share sessions)")
    args = parser.parse_args()
    if args.redis:
        check_redis(parser, args.redis)
        os.environ["LIVE_SESSION_REDIS"] = args.redis
    elif args.workers > 1:
        parser.error("--workers above 1 needs --redis: each worker would have its own in-memory sessions")
    where = f"Redis at {args.redis}" if args.redis else "memory"
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104 - only compared
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    print(f"live-session demo (sessions in {where}): open http://{shown_host}:{args.port}/ in two tabs", flush=True)
    uvicorn.run(
        "demo:create",
        factory=True,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
