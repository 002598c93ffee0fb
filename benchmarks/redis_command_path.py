"""What one Redis round trip costs through redis-py's client, and through the path RedisStore takes.

Run: .venv/bin/python benchmarks/redis_command_path.py [--calls 3000] [--rounds 3] [--gap-us 200]

A GET of a 50-byte value, one call at a time, on a private redis-server on 127.0.0.1, three ways:

- redis-py's asyncio client (``execute_command``), with hiredis;
- the same client on live-session's connection class (hiredis packing, a send without
  ``asyncio.wait_for``);
- live-session's ``Connections``: that connection class used directly, one command at a time,
  without the client and pool layers (what ``RedisStore`` reads and writes go through).

Each is timed back to back and with a pause between calls (``--gap-us``, as when a request does
other work between its round trips). Median µs per call, best of interleaved rounds. A diagnostic,
not a target: the request benchmarks measure the same gain inside whole requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from benchlib import machine, redis_server, table
from redis.backoff import NoBackoff

from live_session._redis_connection import Connections, connection_class

COMMAND = ".venv/bin/python benchmarks/redis_command_path.py"
Call = Callable[[], Awaitable[object]]
CLIENT, QUICK_SEND, DIRECT = (
    "redis-py client",
    "redis-py client, live-session's connection class",
    "live-session's Connections (RedisStore's path)",
)


async def timed(call: Call, calls: int, gap: float) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        await call()
        times.append(time.perf_counter_ns() - start)
        if gap:
            await asyncio.sleep(gap)
    return statistics.median(times) / 1000


async def measure(url: str, calls: int, rounds: int, gap: float) -> dict[tuple[str, float], float]:
    plain = aioredis.Redis.from_url(url)
    quick_pool = aioredis.ConnectionPool.from_url(url)
    quick_pool.connection_class = connection_class(quick_pool.connection_class)
    quick = aioredis.Redis(connection_pool=quick_pool)
    direct = Connections(quick_pool, size=100, wait=5.0, retries=0, backoff=NoBackoff())
    await plain.set("k", "v" * 50)
    ways: dict[str, Call] = {
        CLIENT: lambda: plain.execute_command("GET", "k"),  # type: ignore[no-untyped-call]
        QUICK_SEND: lambda: quick.execute_command("GET", "k"),  # type: ignore[no-untyped-call]
        DIRECT: lambda: direct.call((), "GET", "k"),
    }
    best: dict[tuple[str, float], float] = {}
    try:
        for _ in range(rounds):
            for pause in (0.0, gap):
                for name, call in ways.items():
                    us = await timed(call, calls, pause)
                    best[name, pause] = min(us, best.get((name, pause), us))
    finally:
        await direct.aclose()
        await quick.aclose()
        await quick_pool.aclose()
        await plain.aclose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap-us", type=float, default=200.0, help="pause between calls in the second column")
    args = parser.parse_args()
    gap = args.gap_us / 1e6
    with redis_server() as url:
        best = asyncio.run(measure(url, args.calls, args.rounds, gap))
    print(f"Machine: {machine()}\n")
    print(f"```sh\n{COMMAND}\n```\n")
    rows = []
    for name in (CLIENT, QUICK_SEND, DIRECT):
        back_to_back, paused = best[name, 0.0], best[name, gap]
        rows.append(
            (
                name,
                f"{back_to_back:.1f}",
                f"{paused:.1f}",
                f"{best[CLIENT, 0.0] / back_to_back:.2f}x",
                f"{best[CLIENT, gap] / paused:.2f}x",
            )
        )
    pause = f"{args.gap_us:.0f} µs"
    print(
        table(
            [
                "path",
                "µs per GET, back to back",
                f"µs per GET, {pause} apart",
                "speed-up, back to back",
                f"speed-up, {pause} apart",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
