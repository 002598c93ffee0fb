"""Expiry and memory of MemoryStore: bytes per stored session, and what one sweep costs.

Run: .venv/bin/python benchmarks/expiry_memory.py [--sizes 100000 1000000] [--sweeps 5]

For each size N, N small sessions ({"user": <id>, "cart": <10 items>}, each its own strings, as
sessions decoded from requests are) are stored with ``MemoryStore.commit(..., create=True)``
under 64-character keys (what the middleware uses: a SHA-256 hash in hex) while tracemalloc
counts what stays allocated: bytes per session, and overhead = that minus the session's own JSON
text. The same for starsessions' InMemoryStore (a dict of serialised bytes), written the way its
middleware writes. Then the store's clock (``MemoryStore._clock``) is moved past the expiry of
10,000 of the N sessions and one ``sweep()`` is timed (tracemalloc off, garbage collector off
during the sweep, best of --sweeps rounds, 10,000 fresh sessions expiring in each); the
rest expire in 1,000 other buckets, days later.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import time
import tracemalloc

from benchlib import TTL, PartResult, Target, machine, table
from starsessions import InMemoryStore, generate_session_id

from live_session import MemoryStore
from live_session._values import decode_all

COMMAND = ".venv/bin/python benchmarks/expiry_memory.py"
SIZES = (100_000, 1_000_000)
EXPIRING = 10_000
SWEEPS = 5
SHORT_TTL = 10.0
CACHE_FILL = 20_000  # sessions offered to the cache of decoded values (the default holds about 3,000)


def session_for(index: int) -> dict[str, object]:
    return {"user": index, "cart": [{"sku": f"item-{index}-{i}", "qty": i % 5 + 1} for i in range(10)]}


# The JSON texts, as format strings: filling a million sessions must not take minutes under tracemalloc.
_CART = json.dumps(session_for(0)["cart"], separators=(",", ":")).replace("item-0-", "item-%(n)d-")
_STARSESSIONS = json.dumps({**session_for(0), "__metadata__": {"lifetime": TTL, "created": 0.5, "last_access": 0.5}})
_STARSESSIONS = _STARSESSIONS.replace("item-0-", "item-%(n)d-").replace('"user": 0', '"user": %(n)d')
_STARSESSIONS = _STARSESSIONS.replace("0.5", "%(now)r")


def stored_for(index: int) -> dict[str, str]:
    """The session as the store keeps it: key -> JSON text (fresh strings, as decoding a request makes)."""
    return {"user": str(index), "cart": _CART % {"n": index}}


def starsessions_for(index: int, now: float) -> bytes:
    """The session as starsessions' JsonSerializer writes it, with its metadata."""
    return (_STARSESSIONS % {"n": index, "now": now}).encode()


def json_size(index: int) -> int:
    return len(json.dumps(session_for(index), separators=(",", ":")))


def key_for(index: int) -> str:
    return hashlib.sha256(f"session-{index}".encode()).hexdigest()


class Clock:
    """Stands in for time.monotonic, so sessions can expire without waiting."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def live_memory(size: int, sweeps: int) -> tuple[float, int, list[float]]:
    """Bytes per session with ``size`` stored, what the cache of decoded values takes once full,
    and the time of each sweep of EXPIRING of them."""
    clock = Clock()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = MemoryStore(max_sessions=None)  # no bound: a million sessions are stored on purpose
    store._clock = clock
    for index in range(size - EXPIRING):
        # Expiring days from now, spread over 1,000 buckets.
        await store.commit(key_for(index), stored_for(index), (), ttl=TTL + (index % 1000) * 60, create=True)
    serial = size
    for _ in range(EXPIRING):
        await store.commit(key_for(serial), stored_for(serial), (), ttl=SHORT_TTL, create=True)
        serial += 1
    gc.collect()
    stored = tracemalloc.get_traced_memory()[0]
    per_session = (stored - before) / size
    # Fill the cache of decoded values, as requests that read only scalars do: more than it holds.
    for index in range(min(size, CACHE_FILL)):
        record = await store.load(key_for(index))
        assert record is not None
        store.keep_decoded(key_for(index), record, lambda: decode_all(record.data))  # noqa: B023 - called at once
    gc.collect()
    cache_bytes = tracemalloc.get_traced_memory()[0] - stored
    tracemalloc.stop()
    timings = []
    for round_ in range(sweeps):
        if round_:
            for _ in range(EXPIRING):
                await store.commit(key_for(serial), stored_for(serial), (), ttl=SHORT_TTL, create=True)
                serial += 1
        assert len(store) == size
        clock.now += SHORT_TTL + store.clean_interval
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        removed = store.sweep()
        timings.append(time.perf_counter() - started)
        gc.enable()
        if removed != EXPIRING:
            raise RuntimeError(f"swept {removed} sessions, expected {EXPIRING}")
    await store.aclose()
    return per_session, cache_bytes, timings


async def starsessions_memory(size: int) -> float:
    """Bytes per session in starsessions' InMemoryStore, written as its middleware writes them."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = InMemoryStore()
    now = time.time()
    for index in range(size):
        await store.write(generate_session_id(), starsessions_for(index, now), lifetime=TTL, ttl=TTL)
    gc.collect()
    per_session = (tracemalloc.get_traced_memory()[0] - before) / size
    tracemalloc.stop()
    return per_session


def run(*, sizes: tuple[int, ...] = SIZES, sweeps: int = SWEEPS) -> PartResult:
    payload = statistics.mean(json_size(i) for i in range(1000))
    memory_rows = []
    sweep_ms: dict[int, float] = {}
    per_session: dict[int, float] = {}
    cache_mb: dict[int, float] = {}
    for size in sizes:
        ours, cache_bytes, timings = asyncio.run(live_memory(size, sweeps))
        cache_mb[size] = cache_bytes / 1e6
        theirs = asyncio.run(starsessions_memory(size))
        per_session[size] = ours
        sweep_ms[size] = min(timings) * 1000
        memory_rows.append(
            (f"{size:,}", f"{ours:,.0f}", f"{ours - payload:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.2f}x")
        )
    sweep_rows = [
        (f"{size:,}", f"{EXPIRING:,}", f"{ms:.2f}", f"{ms * 1000 / EXPIRING:.2f}") for size, ms in sweep_ms.items()
    ]
    markdown = (
        f'Small sessions (`{{"user": <id>, "cart": <10 items>}}`, {payload:.0f} bytes of JSON on average), '
        "counted by tracemalloc (what stays allocated after storing them, keys included), next to starsessions' "
        "`InMemoryStore` holding the same sessions as its middleware writes them (with its metadata):\n\n"
        + table(
            [
                "sessions stored",
                "live-session bytes/session",
                "overhead beyond the JSON",
                "starsessions bytes/session",
                "ratio",
            ],
            memory_rows,
        )
        + "\n\nOn top of that, the decoded values of recently loaded sessions (`decoded_cache_size`, by "
        f"default 1 MiB of those sessions' JSON), filled by offering the values of {CACHE_FILL:,} of them: "
        + ", ".join(f"{mb:.1f} MB with {size:,} stored" for size, mb in cache_mb.items())
        + ", the same whatever the number stored."
        + f"\n\nOne `sweep()` removing {EXPIRING:,} expired sessions (the store's clock moved past their expiry; "
        f"best of {sweeps} sweeps; garbage collector paused during each):\n\n"
        + table(["sessions stored", "expired", "sweep ms", "µs per expired session"], sweep_rows)
    )
    targets = []
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        growth = sweep_ms[large] / sweep_ms[small]
        targets.append(
            Target(
                f"sweep of {EXPIRING:,} expired: {large:,} stored ÷ {small:,} stored",
                "≤ 1.5x",
                f"{growth:.2f}x",
                growth <= 1.5,
            )
        )
    for size in sizes:
        overhead = per_session[size] - payload
        targets.append(
            Target(f"overhead per small session, {size:,} stored", "< 1,024 B", f"{overhead:,.0f} B", overhead < 1024)
        )
    data = {"bytes_per_session": per_session, "sweep_ms": sweep_ms, "payload": payload, "cache_mb": cache_mb}
    return PartResult("memory", "Expiry and memory (MemoryStore)", COMMAND, markdown, targets, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of stored sessions")
    parser.add_argument("--sweeps", type=int, default=SWEEPS)
    args = parser.parse_args()
    if min(args.sizes) <= EXPIRING:
        parser.error(f"every size must be above {EXPIRING:,}")
    part = run(sizes=tuple(args.sizes), sweeps=args.sweeps)
    print(f"Machine: {machine()}\n")
    print(part.markdown, end="\n\n")
    print(part.targets_table())


if __name__ == "__main__":
    main()
