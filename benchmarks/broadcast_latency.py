"""Broadcast latency and fan-out: from a write returning to each subscriber receiving the change.

Run: .venv/bin/python benchmarks/broadcast_latency.py [--no-redis] [--writes-scale 1.0] [--chart PATH]

Three shapes: 1 subscriber on one session; 100 subscribers on one session; 10,000 subscribers
over 5,000 sessions (2 each; the writes go to every session in turn). Writes are sequential: the
next starts once every subscriber of the last one has it, so each figure is one unloaded path.

- In one process (clock: time.perf_counter_ns): live-session's MemoryStore, ``store.commit()``
  to ``store.subscribe()`` iterators; reference: encode's broadcaster with its memory backend,
  ``publish()`` to ``subscribe()``, same shapes.
- Across two processes on one Redis (clock: time.monotonic_ns, CLOCK_MONOTONIC, one clock for the
  whole Linux host): this process writes with ``RedisStore.commit()``, a second one subscribes
  through its own ``RedisStore``; reference: plain redis-py PUBLISH here, received in the other
  process by as many redis-py pub/sub connections as there are subscribers per session (1, 100,
  2), each subscribed to every session's channel: as many receipts per write as live-session's.

Writes a chart of the percentiles (default benchmarks/broadcast_latency.png).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from benchlib import SESSION, TTL, PartResult, Target, machine, percentile, redis_server, table
from broadcaster import Broadcast
from redis.asyncio.client import PubSub

from live_session import MemoryStore, RedisStore

COMMAND = ".venv/bin/python benchmarks/broadcast_latency.py"
CHART = Path(__file__).resolve().parent / "broadcast_latency.png"
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
# The session every shape writes to, as stored (key -> JSON text).
STORED = {key: json.dumps(value, separators=(",", ":")) for key, value in SESSION.items()}
PREFIX = "bench:broadcast:"
LIVE_MEMORY, BROADCASTER = "live-session MemoryStore", "broadcaster memory"
LIVE_REDIS, RAW_REDIS = "live-session RedisStore", "redis-py PUBLISH"
FROM_RETURN = ", from the write's return"
WIRE = "redis-py PUBLISH to RedisStore subscribers (diagnostic)"


@dataclass(frozen=True)
class Shape:
    label: str
    sessions: int
    per_session: int
    writes: int


SHAPES = [
    Shape("1 subscriber", 1, 1, 2000),
    Shape("100 subscribers, 1 session", 1, 100, 300),
    Shape("10,000 subscribers, 5,000 sessions", 5000, 2, 5000),
]


class Receipts:
    """Receive times of the current write; ``done`` is set when every expected subscriber has it."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.expected = 0
        self.done = asyncio.Event()
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.subscribers = 0

    def subscribed(self) -> None:
        self.ready += 1
        if self.ready == self.subscribers:
            self.all_ready.set()

    def expect(self, count: int) -> None:
        self.times = []
        self.expected = count
        self.done.clear()

    def hit(self, now: int) -> None:
        self.times.append(now)
        if len(self.times) >= self.expected:
            self.done.set()


def message_for(index: int, version: int | None = None) -> str:
    """What the references publish: what live-session's Redis store sends for one change (only what changed)."""
    version = index if version is None else version
    return json.dumps({"v": version, "r": "updated", "c": ["n"], "x": [], "d": {"n": str(index)}})


# -- in one process --


async def sequential_writes(
    shape: Shape, receipts: Receipts, write: Callable[[int, int], Awaitable[None]], clock: Callable[[], int]
) -> list[int]:
    """Write ``shape.writes`` times in turn; latencies (ns) from each write returning to each receipt."""
    latencies: list[int] = []
    for index in range(shape.writes):
        receipts.expect(shape.per_session)
        await write(index % shape.sessions, index)
        sent = clock()
        await asyncio.wait_for(receipts.done.wait(), 30)
        latencies += [received - sent for received in receipts.times]
    return latencies


async def live_memory(shape: Shape) -> list[int]:
    store = MemoryStore()
    keys = [f"session-{i}" for i in range(shape.sessions)]
    for key in keys:
        await store.commit(key, STORED, (), ttl=TTL, create=True)
    receipts = Receipts()
    receipts.subscribers = shape.sessions * shape.per_session

    async def subscriber(key: str) -> None:
        async with store.subscribe(key) as updates:
            await anext(updates)  # the snapshot
            receipts.subscribed()
            async for _ in updates:
                receipts.hit(time.perf_counter_ns())

    tasks = [asyncio.create_task(subscriber(key)) for key in keys for _ in range(shape.per_session)]
    await asyncio.wait_for(receipts.all_ready.wait(), 60)

    async def write(session: int, index: int) -> None:
        await store.commit(keys[session], {"n": str(index)}, (), ttl=TTL)

    latencies = await sequential_writes(shape, receipts, write, time.perf_counter_ns)
    await store.aclose()  # ends every subscription
    await asyncio.gather(*tasks)
    return latencies


async def broadcaster_memory(shape: Shape) -> list[int]:
    channels = [f"session-{i}" for i in range(shape.sessions)]
    receipts = Receipts()
    receipts.subscribers = shape.sessions * shape.per_session
    async with Broadcast("memory://") as broadcast:

        async def subscriber(channel: str) -> None:
            async with broadcast.subscribe(channel) as events:
                receipts.subscribed()
                while True:
                    await events.get()
                    receipts.hit(time.perf_counter_ns())

        tasks = [asyncio.create_task(subscriber(channel)) for channel in channels for _ in range(shape.per_session)]
        await asyncio.wait_for(receipts.all_ready.wait(), 60)

        async def write(session: int, index: int) -> None:
            await broadcast.publish(channels[session], message_for(index))

        latencies = await sequential_writes(shape, receipts, write, time.perf_counter_ns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


# -- across two processes on Redis --


async def across_processes(system: str, shape: Shape, url: str) -> tuple[list[int], list[int]]:
    """This process writes; a child process (this script, --child) subscribes and reports receive times.

    Returns latencies (ns) from each write's start, and from its return, to each receipt.
    """
    keys = [f"session-{i}" for i in range(shape.sessions)]
    store = RedisStore(url, prefix=PREFIX)
    client = aioredis.Redis.from_url(url)
    if system != "raw":
        for key in keys:
            await store.commit(key, STORED, (), ttl=TTL, create=True)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        system,
        str(shape.sessions),
        str(shape.per_session),
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    per_write = shape.per_session
    try:
        if (await asyncio.wait_for(child.stdout.readline(), 120)).strip() != b"ready":
            raise RuntimeError(f"{system} subscriber process failed to start")
        started: list[int] = []
        sent: list[int] = []
        for index in range(shape.writes):
            key = keys[index % shape.sessions]
            started.append(time.monotonic_ns())
            if system == "live":
                await store.commit(key, {"n": str(index)}, (), ttl=TTL)
            elif system == "wire":  # what the commit script publishes, without the script
                # Each session's versions run on from the 1 it was stored with, one per write to it.
                await client.publish(PREFIX + "c:" + key, message_for(index, index // shape.sessions + 2))
            else:
                await client.publish(PREFIX + "raw:" + key, message_for(index))
            sent.append(time.monotonic_ns())
            await asyncio.wait_for(child.stdout.readline(), 30)  # every subscriber has it
        child.stdin.write(b"done\n")
        await child.stdin.drain()
        received: list[int] = json.loads(await child.stdout.read())
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        await store.aclose()
        await client.flushdb()
        await client.aclose()
    from_start = [at - started[i // per_write] for i, at in enumerate(received)]
    return from_start, [at - sent[i // per_write] for i, at in enumerate(received)]


async def child(system: str, shape: Shape, url: str) -> None:
    """The subscriber process: prints "ready", one "ack" per write received by all, then the receive times."""
    times: list[int] = []
    count = 0
    per_write = shape.per_session
    keys = [f"session-{i}" for i in range(shape.sessions)]

    def hit() -> None:
        nonlocal count
        times.append(time.monotonic_ns())
        count += 1
        if count == per_write:
            count = 0
            sys.stdout.write("ack\n")
            sys.stdout.flush()

    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, sys.stdin.readline)
    if system != "raw":
        store = RedisStore(url, prefix=PREFIX)
        ready = 0
        all_ready = asyncio.Event()

        # Subscribers arrive 50 at a time: a burst of more concurrent subscribes than redis-py's pool
        # allows (100 connections by default in redis-py 8) fails with "Too many connections".
        arriving = asyncio.Semaphore(50)

        async def subscriber(key: str) -> None:
            nonlocal ready
            async with contextlib.AsyncExitStack() as stack:
                async with arriving:
                    updates = await stack.enter_async_context(store.subscribe(key))
                    await anext(updates)  # the snapshot
                ready += 1
                if ready == shape.sessions * shape.per_session:
                    all_ready.set()
                async for _ in updates:
                    hit()

        tasks = [asyncio.create_task(subscriber(key)) for key in keys for _ in range(shape.per_session)]
        await asyncio.wait_for(all_ready.wait(), 120)
        print("ready", flush=True)
        await done
        await store.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
    else:
        # One pub/sub connection per subscriber of a session, each on every channel.
        client = aioredis.Redis.from_url(url, max_connections=per_write + 10)
        pubsubs = [client.pubsub() for _ in range(per_write)]
        channels = [PREFIX + "raw:" + key for key in keys]
        for pubsub in pubsubs:
            await pubsub.subscribe(*channels)
            confirmed = 0
            while confirmed < len(channels):
                message = await pubsub.get_message(timeout=10)
                confirmed += message is not None and message["type"] == "subscribe"
        print("ready", flush=True)

        async def listen(pubsub: PubSub) -> None:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    hit()

        listeners = [asyncio.create_task(listen(pubsub)) for pubsub in pubsubs]
        await done
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for pubsub in pubsubs:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    sys.stdout.write(json.dumps(times) + "\n")
    sys.stdout.flush()


# -- the report --


def summary(latencies: list[int]) -> list[float]:
    """Percentiles (PERCENTILES) in µs."""
    ordered = sorted(latencies)
    return [percentile(ordered, p) / 1000 for p in PERCENTILES]


def us(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


async def measure(url: str | None, scale: float) -> dict[str, dict[str, list[float]]]:
    """{system: {shape label: percentiles in µs}}."""
    results: dict[str, dict[str, list[float]]] = {}
    shapes = [Shape(s.label, s.sessions, s.per_session, max(10, int(s.writes * scale))) for s in SHAPES]
    for name, run_one in ((LIVE_MEMORY, live_memory), (BROADCASTER, broadcaster_memory)):
        for shape in shapes:
            await run_one(Shape(shape.label, shape.sessions, shape.per_session, 50))  # warm up
            results.setdefault(name, {})[shape.label] = summary(await run_one(shape))
    if url is not None:
        for system, name in (("live", LIVE_REDIS), ("raw", RAW_REDIS), ("wire", WIRE)):
            for shape in shapes:
                from_start, from_return = await across_processes(system, shape, url)
                results.setdefault(name, {})[shape.label] = summary(from_start)
                results.setdefault(name + FROM_RETURN, {})[shape.label] = summary(from_return)
    return results


def chart(results: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("In one process, from the write's return", (LIVE_MEMORY, BROADCASTER)),
        ("Two processes, one Redis, from the write's start", (LIVE_REDIS, RAW_REDIS)),
    ]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    labels = ["p50", "p90", "p99", "p99.9", "max"]
    styles = {SHAPES[0].label: "o-", SHAPES[1].label: "s--", SHAPES[2].label: "^:"}
    for axis, (title, systems) in zip(axes, panels, strict=True):
        for system, color in zip(systems, ("tab:blue", "tab:orange"), strict=True):
            for shape, values in results.get(system, {}).items():
                points = [max(v, 0.1) for v in values]  # a log scale has no room for the odd negative figure
                axis.plot(labels, points, styles[shape], color=color, label=f"{system}: {shape}")
        axis.set_title(title)
        axis.set_yscale("log")
        axis.set_xlabel("percentile")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("write → subscriber received (µs, log scale)")
    figure.suptitle("live-session broadcast latency (benchmarks/broadcast_latency.py)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(*, with_redis: bool = True, scale: float = 1.0, chart_path: Path | None = CHART) -> PartResult:
    with redis_server() if with_redis else contextlib.nullcontext(None) as url:
        results = asyncio.run(measure(url, scale))
    headers = ["system", "shape", "median µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"]

    def rows(*systems: str) -> list[tuple[str, ...]]:
        return [
            (system, shape, *(us(v) for v in values))
            for system in systems
            for shape, values in results.get(system, {}).items()
        ]

    writes = ", ".join(f"{s.label} ({max(10, int(s.writes * scale)):,} writes)" for s in SHAPES)
    markdown = (
        "Writes one after another, the next once every subscriber has the last. Shapes: "
        f"{writes}; 10,000 subscribers means 2 on each of 5,000 sessions, written in turn.\n\n"
        "In one process, from a write returning to each subscriber receiving it (`time.perf_counter_ns`): "
        "`MemoryStore.commit()` to `store.subscribe()` iterators, next to encode's broadcaster (memory "
        "backend) `publish()` to `subscribe()`:\n\n" + table(headers, rows(LIVE_MEMORY, BROADCASTER), 2)
    )
    if with_redis:
        markdown += (
            "\n\nAcross two processes on one Redis (`time.monotonic_ns`, CLOCK_MONOTONIC, one clock for the "
            "host): `RedisStore.commit()` in one process, `RedisStore.subscribe()` in another, next to plain "
            "redis-py PUBLISH received by as many redis-py pub/sub connections as there are subscribers per "
            "session, each subscribed to every session's channel (as many receipts per write as "
            "live-session's). Redis sends the message before the write's reply, so on this machine a subscriber often "
            "has it before the writer has its reply: these figures run from the write's start (the table "
            "below them, from its return, has negative medians).\n\n"
            + table(headers, rows(LIVE_REDIS, RAW_REDIS), 2)
            + "\n\nA diagnostic, to split the difference: plain PUBLISH of what the commit script publishes, "
            "straight to the channel `RedisStore` subscribers listen on (the subscriber side without the "
            "commit script):\n\n"
            + table(headers, rows(WIRE), 2)
            + "\n\nThe same, from the write's return:\n\n"
            + table(headers, rows(LIVE_REDIS + FROM_RETURN, RAW_REDIS + FROM_RETURN), 2)
        )
    markdown += "\n\n![Broadcast latency percentiles](broadcast_latency.png)"
    big = SHAPES[2].label
    memory = results[LIVE_MEMORY][big]
    targets = [
        Target("one process, 10,000 subscribers: median", "< 50 µs", f"{us(memory[0])} µs", memory[0] < 50),
        Target("one process, 10,000 subscribers: p99", "< 1 ms", f"{us(memory[2])} µs", memory[2] < 1000),
    ]
    if with_redis:
        live, raw = results[LIVE_REDIS], results[RAW_REDIS]
        for shape in SHAPES:
            reference = raw[shape.label]
            slower = live[shape.label][0] / reference[0]
            measured = f"{slower:.2f}x ({us(live[shape.label][0])} / {us(reference[0])} µs)"
            what = f"2 processes, {shape.label}: median ÷ raw PUBLISH's"
            targets.append(Target(what, "≤ 1.5x", measured, 0 < slower <= 1.5))
    if chart_path is not None:
        chart(results, chart_path)
    return PartResult("broadcast", "Broadcast latency and fan-out", COMMAND, markdown, targets, {"us": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-redis", action="store_true", help="skip the two-process Redis measurements")
    parser.add_argument("--writes-scale", type=float, default=1.0, help="scale the number of writes per shape")
    parser.add_argument("--chart", type=Path, default=CHART, help="where to write the PNG")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        system, sessions, per_session, url = args.child
        asyncio.run(child(system, Shape("child", int(sessions), int(per_session), 0), url))
        return
    part = run(with_redis=not args.no_redis, scale=args.writes_scale, chart_path=args.chart)
    print(f"Machine: {machine()}\n")
    print(part.markdown, end="\n\n")
    print(part.targets_table())


if __name__ == "__main__":
    main()
