"""Per-request cost, in process through ASGI: live-session next to no middleware, Starlette and starsessions.

Run: .venv/bin/python benchmarks/inprocess_requests.py [--requests 8000] [--rounds 7] [--no-redis]
(after scripts/test or scripts/demo made .venv; the Redis cases start their own redis-server).

The same Starlette app (one route reads the user id of a session holding a user id and a 10-item
cart, one changes one key) is driven directly through ASGI, one request at a time, with no
network, so what differs is the session layer. Configurations: no session middleware (the limit),
Starlette's SessionMiddleware, starsessions with its memory and Redis stores, live-session with
MemoryStore and RedisStore, and routes that make exactly one (read) and two (read then write)
plain redis-py round trips, the limits for a session in Redis. Every figure comes from the same
run; rounds are interleaved and the best of them is kept; ratios are what to compare across
machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from benchlib import (
    REDIS_CONFIGS,
    BenchApp,
    PartResult,
    build_app,
    case_name,
    machine,
    redis_server,
    request_cases,
    request_report,
)
from starlette.types import ASGIApp, Message

REQUESTS = 8_000
REDIS_REQUESTS = 2_400  # a round trip each: fewer, so a round takes about as long
ROUNDS = 7
COMMAND = ".venv/bin/python benchmarks/inprocess_requests.py"


def scope_for(path: str, cookie: str | None) -> dict[str, object]:
    headers = [(b"host", b"bench")]
    if cookie:
        headers.append((b"cookie", b"session=" + cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def drive(app: ASGIApp, path: str, cookie: str | None, requests: int) -> float:
    """Requests per second, one after another."""
    template = scope_for(path, cookie)

    async def send(message: Message) -> None:
        pass

    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(template), receive, send)
    return requests / (time.perf_counter() - started)


async def check(app: ASGIApp, path: str, cookie: str | None, route: str) -> None:
    """One request, to make sure the configuration really reads (or writes) the seeded session."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope_for(path, cookie), receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    expected = b"42" if route == "read" else b"ok"
    if status != 200 or (path != "/bare" and body != expected):
        raise RuntimeError(f"{path}: got {status} {body!r}, expected 200 {expected!r}")


async def measure(redis_url: str | None, requests: int, redis_requests: int, rounds: int) -> dict[str, float]:
    cases = request_cases(redis_url is not None)
    apps: dict[str, BenchApp] = {}
    cookies: dict[str, str | None] = {}
    for config, _ in cases:
        if config not in apps:
            apps[config] = build_app(config, redis_url)
            cookies[config] = await apps[config].seed()
    plan = []
    for config, route in cases:
        bench = apps[config]
        path = bench.read_path if route == "read" else bench.write_path
        await check(bench.app, path, cookies[config], route)
        count = redis_requests if config in REDIS_CONFIGS else requests
        await drive(bench.app, path, cookies[config], count // 10)  # warm up
        plan.append((case_name(config, route), bench.app, path, cookies[config], count))
    best = dict.fromkeys((name for name, *_ in plan), 0.0)
    for _ in range(rounds):
        for name, app, path, cookie, count in plan:
            best[name] = max(best[name], await drive(app, path, cookie, count))
    for bench in apps.values():
        await bench.aclose()
    return best


def run(*, requests: int = REQUESTS, rounds: int = ROUNDS, with_redis: bool = True) -> PartResult:
    with redis_server() if with_redis else contextlib.nullcontext(None) as url:
        best = asyncio.run(measure(url, requests, requests * REDIS_REQUESTS // REQUESTS, rounds))
    markdown, targets = request_report(best, "in process")
    markdown = (
        f"One Starlette app driven straight through ASGI (no sockets), one request at a time, "
        f"{requests:,} requests per case ({requests * REDIS_REQUESTS // REQUESTS:,} for Redis), best of "
        f"{rounds} interleaved rounds; Redis on 127.0.0.1. The session holds a user id and a "
        "10-item cart; the read route reads the user id, the write route changes one key. The limit rows: "
        "the route without any session middleware, and routes making one (GET) or two (GET, SET) plain "
        "redis-py round trips.\n\n" + markdown
    )
    return PartResult(
        "inprocess", "Per-request cost, in process, every configuration", COMMAND, markdown, targets, {"rps": best}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per case and round (memory)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis configurations")
    args = parser.parse_args()
    result = run(requests=args.requests, rounds=args.rounds, with_redis=not args.no_redis)
    print(f"Machine: {machine()}\n")
    print(result.markdown, end="\n\n")
    print(result.targets_table())


if __name__ == "__main__":
    main()
