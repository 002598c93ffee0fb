"""In-process fan-out of session updates to subscribers, safe across threads and event loops.

A store publishes each change once; every subscriber of that session gets it in
version order. A subscriber has a bounded queue: one that falls behind has its
newest queued updates merged into one, so writers never wait and memory stays
bounded, and it still ends at the newest state.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ._updates import SessionUpdate

__all__ = ["Hub", "Subscription"]


class Subscription(AsyncIterator[SessionUpdate]):
    """The async iterator ``LiveSession.subscribe()`` gives: updates until the session ends or the store closes."""

    __slots__ = ("_closed", "_crossed", "_last_version", "_loop", "_maxsize", "_queue", "_thread", "_waiter")

    def __init__(self, maxsize: int = 64) -> None:
        if maxsize < 2:
            raise ValueError(f"max_queue must be at least 2 (the snapshot and the newest update), got {maxsize!r}")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._maxsize = maxsize
        self._queue: deque[SessionUpdate] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._last_version = -1
        self._crossed = False  # once anything came from another thread, everything goes through the loop

    # Called by the hub, from any thread. From the subscriber's own thread an update is queued at
    # once. Once one has come from another thread, every update goes through the loop's callback
    # queue instead: stores publish under their lock, so that queue keeps them in version order.
    # (`_crossed` is set under the store's lock too, before the first such callback is queued.)
    def push(self, update: SessionUpdate) -> None:
        self._call(self._deliver, update)

    def close(self) -> None:
        self._call(self._end)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            if threading.get_ident() != self._thread:
                self._crossed = True
                self._loop.call_soon_threadsafe(callback, *args)
            elif self._crossed:
                self._loop.call_soon(callback, *args)
            else:
                callback(*args)
        except RuntimeError:  # that loop is closed: nobody is listening any more
            self._closed = True

    def start(self, snapshot: SessionUpdate) -> None:
        """Put the snapshot first and drop anything queued that it already covers."""
        self._last_version = snapshot.version
        newer = [update for update in self._queue if update.version > snapshot.version]
        self._queue = deque([snapshot, *newer])
        self._wake()

    def _deliver(self, update: SessionUpdate) -> None:
        if self._closed or update.version <= self._last_version:
            return  # duplicate or late: never roll a view back
        self._last_version = update.version
        if len(self._queue) >= self._maxsize:
            update = self._queue.pop().merge(update)
        self._queue.append(update)
        if update.terminal:
            self._closed = True
        self._wake()

    def _end(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> SessionUpdate:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def merge_pending(self, update: SessionUpdate) -> SessionUpdate:
        """``update`` merged with every update already queued behind it: the newest state, in one step.

        For consumers that render: after a burst they skip straight to the end.
        """
        while self._queue:
            update = update.merge(self._queue.popleft())
        return update

    @property
    def closed(self) -> bool:
        return self._closed


class Hub:
    """Subscribers by session key."""

    __slots__ = ("_lock", "_subscribers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}

    def add(self, key: str, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.setdefault(key, set()).add(subscription)

    def discard(self, key: str, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[key]

    def publish(self, key: str, update: SessionUpdate) -> None:
        with self._lock:
            subscribers = self._subscribers.get(key)
            if not subscribers:
                return
            if update.terminal:
                del self._subscribers[key]
            targets = tuple(subscribers)
        for subscription in targets:
            subscription.push(update)

    def has_subscribers(self, key: str) -> bool:
        return key in self._subscribers

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._subscribers)

    def close_all(self) -> None:
        with self._lock:
            targets = [sub for subs in self._subscribers.values() for sub in subs]
            self._subscribers.clear()
        for subscription in targets:
            subscription.close()

    def __len__(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())
