"""What a Lua script's time in Redis costs a Python client: the diagnostic behind the Redis write targets.

Run: .venv/bin/python benchmarks/redis_script_cost.py [--calls 2000] [--rounds 5]

One redis-py asyncio client, one call at a time, on a private redis-server on 127.0.0.1. For each
command: the client's µs per call (best of interleaved rounds) and the server's own µs per call
(INFO commandstats). The commands: GET and SET (what the read-modify-write limit makes), HGETALL (a
live-session read), EVALSHA of a script that only returns, with the arguments of a commit, and
``RedisStore.commit()`` itself (a change of one key, as a request makes it); then scripts that only
spin, to show how the client's latency grows with the server's time. A diagnostic, not a target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from benchlib import SESSION, machine, redis_server, table

from live_session import RedisStore

COMMAND = ".venv/bin/python benchmarks/redis_script_cost.py"
Call = Callable[[], Awaitable[object]]


def spin(client: aioredis.Redis, sha: str) -> Call:
    return lambda: client.evalsha(sha, 0)


async def server_us(client: aioredis.Redis, command: str, call: Call, calls: int) -> float:
    await client.config_resetstat()
    for _ in range(calls):
        await call()
    stats = await client.info("commandstats")
    return float(stats[f"cmdstat_{command}"]["usec_per_call"])


async def measure(url: str, calls: int, rounds: int) -> list[tuple[str, float, float]]:
    client = aioredis.Redis.from_url(url)
    store = RedisStore(url, prefix="cost:")
    stored = {name: json.dumps(value) for name, value in SESSION.items()}
    record = await store.commit("k", stored, (), ttl=3600, create=True)
    raw = json.dumps(SESSION)
    await client.set("raw", raw)
    noop = await client.script_load("return 1")
    args: list[str | int] = [3600000, 0, -1, 1, 65536, 2, "0123456789abcdef", "", 1, 1, 180000, 1, "visits", "1"]
    counter = 0

    async def commit() -> None:
        nonlocal counter, record
        counter += 1
        record = await store.commit("k", {"visits": str(counter)}, (), ttl=3600, base=record)

    noop_label = "EVALSHA of `return 1`, a commit's arguments (redis-py's own packer)"
    cases: list[tuple[str, str, Call]] = [
        ("GET", "get", lambda: client.get("raw")),
        ("SET", "set", lambda: client.set("raw", raw, ex=3600)),
        ("HGETALL (a live-session read)", "hgetall", lambda: client.hgetall("cost:s:k")),
        (noop_label, "evalsha", lambda: client.evalsha(noop, 2, "a", "b", *args)),
        ("RedisStore.commit(), one key changed", "evalsha", commit),
    ]
    # The least a commit script does: read the bookkeeping and the key, write them, publish; no logic.
    least = await client.script_load(
        "local got = redis.call('HMGET', KEYS[1], '_v', '_c', '_d', '_s', '_e', '_f', 'k:' .. ARGV[13]) "
        "local version = tonumber(got[1]) + 1 "
        "redis.call('HSET', KEYS[1], 'k:' .. ARGV[13], ARGV[14], '_v', version, '_c', ARGV[7], '_s', 500) "
        "redis.call('PUBLISH', KEYS[2], cjson.encode({v = version, r = 'updated', c = {ARGV[13]}, x = {}, "
        "d = {[ARGV[13]] = ARGV[14]}})) "
        "return {'ok', version, 500}"
    )
    await client.hset("cost:least", mapping={"_v": 1, "_f": 2, "_s": 500, "k:user": "42"})
    cases.append(
        (
            "EVALSHA of HMGET + HSET + PUBLISH, no logic",
            "evalsha",
            lambda: client.evalsha(least, 2, "cost:least", "x", *args),
        )
    )
    for n in (300, 1000, 3000):
        sha: str = await client.script_load(f"local x = 0 for i = 1, {n} do x = x + i end return 1")
        cases.append((f"EVALSHA of a script spinning {n:,} times", "evalsha", spin(client, sha)))
    best = {name: float("inf") for name, _, _ in cases}
    for _, _, call in cases:
        for _ in range(calls // 10):
            await call()  # warm up
    for _ in range(rounds):
        for name, _, call in cases:
            started = time.perf_counter()
            for _ in range(calls):
                await call()
            best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
    rows = [(name, best[name], await server_us(client, command, call, calls)) for name, command, call in cases]
    await store.aclose()
    await client.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with redis_server() as url:
        rows = asyncio.run(measure(url, args.calls, args.rounds))
    base_client, base_server = rows[0][1], rows[0][2]
    print(f"Machine: {machine()}\n")
    print(f"```sh\n{COMMAND}\n```\n")
    print(
        table(
            ["call", "client µs", "server µs", "client µs beyond GET's", "server µs beyond GET's"],
            [
                (name, f"{client:.1f}", f"{server:.2f}", f"{client - base_client:.1f}", f"{server - base_server:.2f}")
                for name, client, server in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
