"""Decoded values of recently loaded sessions, for a store that reads each session's text afresh."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ._values import encoded_size

__all__ = ["DecodedCache"]


class DecodedCache:
    """The values of recently used sessions, decoded, each with the JSON text they were decoded from.

    ``get`` hands them out only for the very text just loaded, so they are never stale,
    whoever changed the session in between (another process, another host). At most
    ``max_bytes`` of that text is held, counted as ``encoded_size()`` counts it; past
    that, the least recently used session goes first. The values are shared: nothing
    may change them (the middleware copies a list or dict before the app gets it).
    Safe to share between threads.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"decoded_cache_size must be at least 0 bytes (0: no cache), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # key -> (the text, its values, its size); in order of use, the least recent first.
        self._entries: dict[str, tuple[Mapping[str, str], Mapping[str, Any], int]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, data: Mapping[str, str]) -> Mapping[str, Any] | None:
        """The values decoded from ``data``, if they are held for ``key``."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != data:
            return None
        with self._lock:
            entries = self._entries
            if entries.get(key) is entry:  # not replaced since (by another thread): now the most recently used
                del entries[key]
                entries[key] = entry
        return entry[1]

    def put(self, key: str, data: Mapping[str, str], values: Callable[[], Mapping[str, Any] | None]) -> None:
        """Hold ``values()`` (``data`` decoded, or None) for ``key``, if they fit; called only then."""
        size = encoded_size(data)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            decoded = values()
            if decoded is None:
                return
            entries = self._entries
            while entries and self._bytes + size > self.max_bytes:
                self._bytes -= entries.pop(next(iter(entries)))[2]
            entries[key] = (data, decoded, size)
            self._bytes += size

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
