"""The in-memory store: the zero-setup default, and the reference implementation of ``Store``."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ._broadcast import Hub, Subscription
from ._errors import SessionConflict, SessionNotFound, SessionTooLarge
from ._store import Record, Store
from ._updates import Reason, SessionUpdate
from ._values import decode

# The running event loop or None (trio, plain threads): asyncio's C function, cheaper than try/get_running_loop().
_running_loop = asyncio._get_running_loop

__all__ = ["MemoryStore"]

logger = logging.getLogger("live_session")

_NONE: frozenset[str] = frozenset()


class _Entry:
    __slots__ = ("bucket", "data", "deadline", "expires_at", "parts", "record", "used", "version")

    def __init__(self, data: dict[str, str], version: int, deadline: float, bucket: int, parts: int = 0) -> None:
        # Never mutated once stored: a commit builds new dicts, so records handed
        # out by load() and updates in subscriber queues stay as they were.
        self.data = data
        self.used = True  # loaded since the last sweep
        self.version = version
        # What load() hands out, built once per change; with data's values decoded while the store keeps them.
        self.record = Record(data, version)
        self.deadline = deadline  # the absolute lifetime's end (inf: none)
        self.expires_at = deadline
        self.bucket = bucket
        self.parts = parts  # the sum encoded_size() makes of data, kept up to date by commits

    def change(self, data: dict[str, str], parts: int, values: Mapping[str, Any] | None) -> Record:
        self.data = data
        self.version += 1
        self.parts = parts
        self.record = Record(data, self.version, values)
        return self.record

    def keep_values(self, values: Mapping[str, Any] | None) -> Record:
        """Start (or stop) handing out the decoded values with the record."""
        self.record = Record(self.data, self.version, values)
        return self.record

    def extend(self, now: float, ttl: float) -> None:
        self.expires_at = min(now + ttl, self.deadline)


def _part(key: str, text: str) -> int:
    return len(key.encode("utf-8")) + len(text) + 4


def _values_after(
    old: Mapping[str, Any], changes: Mapping[str, str], changed: list[str], gone: frozenset[str]
) -> dict[str, Any] | None:
    """The decoded values after a commit: the old ones, with only the changed keys decoded.

    None if a changed value is not JSON text (a store contract broken by the caller: it is
    stored, as it would be in a session whose values are not kept).
    """
    new = {}
    for key in changed:
        try:
            new[key] = decode(changes[key])
        except ValueError:
            return None
    if gone:
        values = {key: value for key, value in old.items() if key not in gone}
        values.update(new)
        return values
    return {**old, **new}


class MemoryStore(Store):
    """Sessions in this process's memory: fast, zero setup, gone on restart, not shared between workers.

    Expired sessions are never returned, and a background task started on
    demand removes them every ``clean_interval`` seconds, telling their
    subscribers ``expired``. At most ``max_sessions`` are held (None: no
    bound): storing one more evicts the longest idle (to within
    ``clean_interval``), whose subscribers are told ``evicted``, so a flood of
    new sessions cannot exhaust memory. Sessions are filed by expiry time in buckets
    ``clean_interval`` wide, so a sweep costs in proportion to what expires,
    not to what is stored (a session in use stays where it was filed until a
    sweep reaches it and files it again: once per idle timeout). The decoded
    values of sessions in use are kept for the next requests (see
    ``keep_decoded``), up to ``decoded_cache_size`` bytes of those sessions'
    JSON (0: none; decoded, sessions of small dicts take about ten times that),
    so a request decodes nothing the app does not read; a session not loaded
    between two sweeps gives its room back. It is safe to share between
    threads and event loops::

        store = MemoryStore(clean_interval=30)
        app = Starlette(middleware=[Middleware(LiveSessionMiddleware, secret_key=KEY, store=store)])
    """

    def __init__(
        self,
        *,
        clean_interval: float = 60.0,
        max_session_size: int = 64 * 1024,
        max_sessions: int | None = 100_000,
        decoded_cache_size: int = 1024 * 1024,
    ) -> None:
        if not (clean_interval > 0 and math.isfinite(clean_interval)):
            raise ValueError(f"clean_interval must be a positive number of seconds, got {clean_interval!r}")
        if max_session_size < 2:
            raise ValueError(f"max_session_size must be at least 2 bytes, got {max_session_size!r}")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1 (or None for no bound), got {max_sessions!r}")
        if decoded_cache_size < 0:
            raise ValueError(f"decoded_cache_size must be at least 0 bytes (0: no cache), got {decoded_cache_size!r}")
        self.clean_interval = clean_interval
        self.max_session_size = max_session_size
        self.max_sessions = max_sessions
        self._limit = max_sessions if max_sessions is not None else math.inf
        self._evicted = 0
        self._next_eviction_log = -math.inf
        self._clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._buckets: dict[int, set[str]] = {}
        self._bucket_heap: list[int] = []
        self._hub = Hub()
        self._sweeper: asyncio.Task[None] | None = None
        self._next_inline_sweep = 0.0
        # Sessions whose values are kept decoded, with their sizes.
        self.decoded_cache_size = decoded_cache_size
        self._cached: dict[str, int] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        """Sessions held, including expired ones not yet swept."""
        return len(self._entries)

    # -- expiry bookkeeping (callers hold the lock) --

    def _file(self, key: str, entry: _Entry, at_least: int = 0) -> None:
        bucket = max(math.ceil(entry.expires_at / self.clean_interval), at_least)
        if bucket == entry.bucket:
            return
        old = self._buckets.get(entry.bucket)
        if old is not None:
            old.discard(key)
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = keys = set()
            heapq.heappush(self._bucket_heap, bucket)
        keys.add(key)
        entry.bucket = bucket

    def _unfile(self, key: str, entry: _Entry) -> None:
        keys = self._buckets.get(entry.bucket)
        if keys is not None:
            keys.discard(key)

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            self._drop(key, entry, "expired")
            return None
        return entry

    def _drop(self, key: str, entry: _Entry, reason: Reason) -> None:
        del self._entries[key]
        self._unfile(key, entry)
        if entry.record.decoded is not None:
            self._uncache(key)
        self._hub.publish(key, SessionUpdate(entry.version + 1, reason, {}, removed=frozenset(entry.data)))

    # -- decoded values of recently used sessions (callers hold the lock, but for keep_decoded) --
    #
    # Values are kept while they fit in the budget; none are evicted to make room, since under a
    # working set larger than the budget that churn costs more (allocation, garbage collection)
    # than decoding. Each sweep instead gives back the room of kept sessions not loaded since the
    # last one, so the kept ones follow the sessions in use.

    def keep_decoded(self, key: str, record: Record, values: Callable[[], Mapping[str, Any] | None]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.record is not record or record.decoded is not None:
                return  # changed or ended since, or kept already
            size = entry.parts + 1  # as encoded_size() counts it (and max_session_size)
            if self._cached_bytes + size > self.decoded_cache_size:
                return
            decoded = values()  # cheap: no decoding, only a check of what the request had
            if decoded is None:
                return
            entry.keep_values(decoded)
            self._cached[key] = size
            self._cached_bytes += size

    def _recount(self, key: str, entry: _Entry) -> Record:
        """After a commit changed a kept session's size; returns its record."""
        size = entry.parts + 1
        grown = size - self._cached[key]
        if self._cached_bytes + grown > self.decoded_cache_size:  # no longer fits: stop keeping this one
            self._uncache(key)
            return entry.keep_values(None)
        self._cached_bytes += grown
        self._cached[key] = size
        return entry.record

    def _uncache(self, key: str) -> None:
        self._cached_bytes -= self._cached.pop(key, 0)

    def _release_unused(self) -> None:
        """Stop keeping the values of sessions not loaded since the last call."""
        for key in list(self._cached):
            entry = self._entries[key]
            if entry.used:
                entry.used = False
            else:
                self._uncache(key)
                entry.keep_values(None)

    def sweep(self) -> int:
        """Remove the sessions that have expired now; returns how many. The background task calls this."""
        with self._lock:
            removed = self._sweep(self._clock())
            if self._cached:
                self._release_unused()
        if removed:
            logger.debug("memory store swept %d expired sessions", removed)
        return removed

    def _sweep(self, now: float) -> int:
        removed = 0
        heap = self._bucket_heap
        while heap and heap[0] * self.clean_interval <= now:
            bucket = heapq.heappop(heap)
            for key in self._buckets.pop(bucket, ()):
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry.expires_at <= now:
                    self._drop(key, entry, "expired")
                    removed += 1
                else:  # extended since it was filed (or float rounding): file it where it now belongs
                    entry.bucket = -1
                    self._file(key, entry, at_least=bucket + 1)
        return removed

    def _make_room(self, now: float) -> None:
        """Before a new session is stored at ``max_sessions``: drop the expired, then evict the longest idle."""
        if len(self._entries) < self._limit or (self._sweep(now) and len(self._entries) < self._limit):
            return
        heap = self._bucket_heap
        # The earliest bucket holds the sessions that expire first: with one idle timeout for all,
        # the ones idle longest (to within clean_interval).
        while heap and len(self._entries) >= self._limit:
            keys = self._buckets.get(heap[0])
            if not keys:
                self._buckets.pop(heapq.heappop(heap), None)
                continue
            key = keys.pop()
            entry = self._entries.get(key)
            if entry is None:
                continue
            if math.ceil(entry.expires_at / self.clean_interval) > heap[0]:
                entry.bucket = -1  # used since it was filed here: file it where it now belongs
                self._file(key, entry)
            else:
                self._drop(key, entry, "evicted")
                self._evicted += 1
        if now >= self._next_eviction_log:
            self._next_eviction_log = now + 60
            logger.warning(
                "memory store is full (max_sessions=%d): evicted %d longest-idle sessions so far",
                self.max_sessions,
                self._evicted,
            )

    # -- background work, started on demand in whatever event loop is running --

    def _ensure_sweeper(self) -> None:
        task = self._sweeper
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Not under asyncio (trio, or plain threads): sweep inline when one is due.
            now = self._clock()
            if now >= self._next_inline_sweep:
                self._next_inline_sweep = now + self.clean_interval
                self.sweep()
            return
        self._sweeper = loop.create_task(self._sweep_forever(), name="live-session memory store sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.clean_interval)
            try:
                self.sweep()
            except Exception:  # a sweep must never take the sweeper down with it
                logger.exception("memory store sweep failed; retrying in %s s", self.clean_interval)

    async def aclose(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None and not task.done():
            loop = task.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                task.cancel()
                await asyncio.wait([task])
            elif not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
        self._hub.close_all()

    # -- the contract --

    def _extend(self, key: str, entry: _Entry, now: float, ttl: float) -> None:
        """Move the expiry to ``ttl`` from now (never past the absolute deadline).

        A later expiry leaves the session in its bucket: the sweep that reaches that bucket files
        it again (see ``_sweep``), so a session in use costs no bucket work per request. An
        earlier one (a smaller ``ttl`` than before) files it at once.
        """
        expires_at = now + ttl
        if expires_at > entry.deadline:
            expires_at = entry.deadline
        earlier = expires_at < entry.expires_at
        entry.expires_at = expires_at
        if earlier:
            self._file(key, entry)

    async def load(self, key: str, *, ttl: float | None = None) -> Record | None:
        task = self._sweeper
        if task is None or task.get_loop() is not _running_loop() or task.done():
            self._ensure_sweeper()
        lock = self._lock  # acquire() and release(): cheaper than a with block, on every request
        lock.acquire()
        try:
            now = self._clock()
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= now:
                self._drop(key, entry, "expired")
                return None
            if ttl is not None:
                expires_at = now + ttl
                if entry.expires_at <= expires_at <= entry.deadline:
                    entry.expires_at = expires_at  # the common case of _extend(), inlined: every request loads
                else:
                    self._extend(key, entry, now, ttl)
            entry.used = True
            return entry.record
        finally:
            lock.release()

    async def commit(
        self,
        key: str,
        changes: Mapping[str, str],
        removed: Collection[str],
        *,
        ttl: float,
        create: bool = False,
        expected_version: int | None = None,
        drop_if_empty: bool = False,
        lifetime: float | None = None,
        base: Record | None = None,
    ) -> Record | None:
        task = self._sweeper
        if task is None or task.get_loop() is not _running_loop() or task.done():
            self._ensure_sweeper()
        lock = self._lock  # acquire() and release(): cheaper than a with block, on every request
        lock.acquire()
        try:
            now = self._clock()
            entry = self._live(key, now)
            if entry is not None:
                current, version, parts, old_values = entry.data, entry.version, entry.parts, entry.record.decoded
            elif create:
                current, version, parts, old_values = {}, 0, 0, None
            else:
                return None
            if expected_version is not None and expected_version != version:
                raise SessionConflict(f"session changed (version {version}, expected {expected_version})")
            # What really changed, and the size after the commit, counted as encoded_size() does
            # from what changed only.
            changed: list[str] = []
            for k, text in changes.items():
                old = current.get(k)
                if old != text:
                    changed.append(k)
                    # _part(k, text) - _part(k, old): the key's own bytes cancel out.
                    parts += len(text) - len(old) if old is not None else _part(k, text)
            gone = frozenset([k for k in removed if k in current and k not in changes]) if removed else _NONE
            if entry is not None and not changed and not gone:
                self._extend(key, entry, now, ttl)
                return entry.record
            for k in gone:
                parts -= _part(k, current[k])
            if gone:
                data = {k: text for k, text in current.items() if k not in gone}
                data.update(changes)
            else:
                data = {**current, **changes}
            if not data and drop_if_empty and entry is not None:
                self._drop(key, entry, "destroyed")
                return Record({}, version + 1)
            size = parts + 1 if data else 2
            if size > self.max_session_size:
                raise SessionTooLarge(
                    f"session would be {size} bytes serialised, over max_session_size={self.max_session_size}"
                )
            if entry is None:
                self._make_room(now)
                entry = _Entry(data, version + 1, now + lifetime if lifetime is not None else math.inf, -1, parts)
                entry.extend(now, ttl)
                self._entries[key] = entry
                self._file(key, entry)
                record = entry.record
            else:
                # Decoding only what changed, under the lock: bounded by max_session_size, and what
                # the next load would otherwise have done.
                values = None if old_values is None else _values_after(old_values, changes, changed, gone)
                size_before = entry.parts
                record = entry.change(data, parts, values)
                if values is not None:
                    if parts != size_before:
                        record = self._recount(key, entry)
                elif old_values is not None:
                    self._uncache(key)
                self._extend(key, entry, now, ttl)  # a new entry got its expiry above, when it was filed
            if self._hub.has_subscribers(key):
                self._hub.publish(key, SessionUpdate(entry.version, "updated", data, frozenset(changed), gone))
            return record
        finally:
            lock.release()

    async def destroy(self, key: str) -> bool:
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return False
            self._drop(key, entry, "destroyed")
            return True

    async def regenerate(self, key: str, new_key: str, *, ttl: float) -> Record | None:
        self._ensure_sweeper()
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None:
                return None
            del self._entries[key]
            self._unfile(key, entry)
            self._uncache(key)
            self._uncache(new_key)  # ids are random: only a store used directly could reuse one
            moved = _Entry(entry.data, entry.version + 1, entry.deadline, -1, entry.parts)
            moved.extend(now, ttl)
            self._entries[new_key] = moved
            self._file(new_key, moved)
            self._hub.publish(key, SessionUpdate(moved.version, "regenerated", entry.data))
            return moved.record

    async def watch(self, key: str, subscription: Subscription) -> None:
        self._ensure_sweeper()
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                raise SessionNotFound("no session to subscribe to (it does not exist or has expired)")
            self._hub.add(key, subscription)
            subscription.start(SessionUpdate(entry.version, "snapshot", entry.data, frozenset(entry.data)))

    async def unwatch(self, key: str, subscription: Subscription) -> None:
        self._hub.discard(key, subscription)
