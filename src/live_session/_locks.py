"""Per-session locks inside one process, so local writers queue instead of racing."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """An ``asyncio.Lock`` per key and per event loop, dropped as soon as nobody holds or awaits it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Lock, list[int]]]]
        self._tables = weakref.WeakKeyDictionary()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with self._guard:
            table = self._tables.get(loop)
            if table is None:
                self._tables[loop] = table = {}
        entry = table.get(key)
        if entry is None:
            entry = table[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del table[key]

    def __len__(self) -> int:
        return sum(len(table) for table in list(self._tables.values()))
