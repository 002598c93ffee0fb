"""Soak: big cycles of sessions that all expire; the memory store must end empty and not grow.

    .venv/bin/python benchmarks/soak_expiry_cycles.py [--sessions 100000] [--cycles 10]

Prints, per cycle, the sessions left after the sweep and the memory traced (tracemalloc) after a
collection. The suite runs the same check small (tests/test_expiry_cycles.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

from live_session import MemoryStore


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def main(sessions: int, cycles: int) -> None:
    store = MemoryStore(clean_interval=1, max_sessions=None)
    clock = Clock()
    store._clock = clock
    tracemalloc.start()
    sizes = []
    for cycle in range(cycles):
        started = time.perf_counter()
        for n in range(sessions):
            await store.commit(f"c{cycle}-{n}", {"user": str(n), "cart": "[1, 2, 3]"}, (), ttl=10, create=True)
        clock.now += 11
        swept_at = time.perf_counter()
        removed = store.sweep()
        sweep_ms = (time.perf_counter() - swept_at) * 1000
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        sizes.append(traced)
        print(
            f"cycle {cycle}: stored {sessions:,} in {swept_at - started:.1f} s, swept {removed:,} in {sweep_ms:.0f} ms,"
            f" left {len(store)}, traced {traced / 1024:.0f} KiB"
        )
        assert len(store) == 0 and removed == sessions
    growth = max(sizes[2:], default=0) - min(sizes[2:], default=0)
    print(f"memory spread over cycles 3..{cycles}: {growth / 1024:.0f} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=10)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sessions, arguments.cycles))
