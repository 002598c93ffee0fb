"""What a subscriber receives: one ``SessionUpdate`` per change, in version order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ._values import decode_all

__all__ = ["TERMINAL_REASONS", "Reason", "SessionUpdate"]

Reason = Literal["snapshot", "updated", "destroyed", "expired", "regenerated", "evicted"]

# After one of these the session id is gone, and the subscription ends.
TERMINAL_REASONS: frozenset[str] = frozenset({"destroyed", "expired", "regenerated", "evicted"})


class SessionUpdate:
    """One change to a session, as a subscriber sees it.

    ``session`` is the whole session after the change (decoded on first use and
    shared by every subscriber of the change: treat it as read-only).
    ``changed`` and ``removed`` are the keys this update set and deleted,
    ``version`` is strictly higher than that of the update before, and
    ``reason`` is one of ``snapshot``, ``updated``, ``destroyed``, ``expired``
    and ``regenerated``. After the last three the subscription ends::

        async with live.subscribe() as updates:
            async for update in updates:
                await websocket.send_json({"cart": update.session.get("cart", [])})
    """

    __slots__ = ("_data", "_session", "changed", "reason", "removed", "version")

    def __init__(
        self,
        version: int,
        reason: Reason,
        data: Mapping[str, str],
        changed: frozenset[str] = frozenset(),
        removed: frozenset[str] = frozenset(),
    ) -> None:
        self.version = version
        self.reason: Reason = reason
        self.changed = changed
        self.removed = removed
        self._data = data
        self._session: dict[str, Any] | None = None

    @property
    def session(self) -> dict[str, Any]:
        if self._session is None:
            self._session = decode_all(self._data)
        return self._session

    @property
    def terminal(self) -> bool:
        """True when the session id is gone (destroyed, expired or regenerated)."""
        return self.reason in TERMINAL_REASONS

    def merge(self, newer: SessionUpdate) -> SessionUpdate:
        """One update equivalent to this one followed by ``newer`` (for subscribers that fell behind)."""
        changed = (self.changed - newer.removed) | newer.changed
        removed = (self.removed - newer.changed) | newer.removed
        # A snapshot stays a snapshot, so the first update a subscriber sees is always one.
        reason = "snapshot" if self.reason == "snapshot" and not newer.terminal else newer.reason
        return SessionUpdate(newer.version, reason, newer._data, changed, removed)

    def __repr__(self) -> str:
        return (
            f"SessionUpdate(version={self.version}, reason={self.reason!r}, "
            f"changed={sorted(self.changed)}, removed={sorted(self.removed)})"
        )
