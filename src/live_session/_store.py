"""The store contract: what the middleware and live handles need from where sessions live.

A store keeps, per session key (a hash of the session id), a mapping of key to
JSON text and a version that every change bumps. Every method is atomic on its
own; ``MemoryStore`` is the reference implementation, and one shared test suite
runs against every store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ._broadcast import Subscription

__all__ = ["Record", "Store"]


@dataclass(frozen=True, slots=True)
class Record:
    """A stored session: ``data`` maps each key to its JSON text; ``version`` counts its changes.

    ``decoded``, if the store keeps it (see ``Store.keep_decoded``), holds the values of ``data``
    decoded, and the middleware then decodes nothing when it loads the record. Those values are
    shared: the middleware copies a list or dict out of them before the app gets it, and nothing
    may change them.
    """

    data: Mapping[str, str]
    version: int
    decoded: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


class Store(ABC):
    """Where sessions live. Subclass it to add a backend; use it as ``async with store:`` or let apps close it."""

    @abstractmethod
    async def load(self, key: str, *, ttl: float | None = None) -> Record | None:
        """The session, or None if there is none or it has expired.

        With ``ttl``, its idle lifetime is extended to ``ttl`` seconds from now
        in the same step. That is not a change: no version bump, no broadcast.
        A store may skip an extension that would move the end by only a small
        share of ``ttl`` (``RedisStore``: 5 %, at most a minute), saving a write.
        """

    @abstractmethod
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
        """Set ``changes`` and delete ``removed`` in one atomic step, bump the version and broadcast.

        ``changes`` maps keys to JSON text as ``live_session``'s encoder writes it (ASCII: sizes
        count characters, and every store counts them alike only then).

        Keys not named are left as they are, so writers of different keys never
        overwrite each other. Returns the session after the commit, or None if
        it does not exist (destroyed or expired) and ``create`` is false: a
        commit never brings a session back. ``create`` makes a new session under
        a fresh key. With ``expected_version`` the commit only happens if the
        version is still that one, else ``SessionConflict``. With
        ``drop_if_empty``, a session left with no keys is deleted (and its
        subscribers told ``destroyed``); the returned record is then empty.
        Raises ``SessionTooLarge`` (and stores nothing) past the size limit.

        ``ttl`` is the idle lifetime from now. ``lifetime``, given with
        ``create``, is the absolute one: however often it is loaded or changed,
        the session expires at most ``lifetime`` seconds after it was created
        (a regeneration keeps that deadline).

        ``base``, if given, is the record the changes were computed from (as
        ``load()`` returned it). It changes nothing in what is stored; a store
        may use it to build the returned record without reading the session
        back when nothing else changed it in between.
        """

    def keep_decoded(  # noqa: B027 - optional
        self, key: str, record: Record, values: Callable[[], Mapping[str, Any] | None]
    ) -> None:
        """Offered by the middleware after a request: ``values()`` returns ``record.data`` decoded, or None.

        The values are those the request loaded or stored, none of which the app got hold of (None
        if that cannot be told); the middleware offers them only for a record that carries none. A
        store may hand them out with later loads (as ``Record.decoded``), so those decode nothing,
        as long as ``data`` is still the session's text: ``MemoryStore`` keeps them with its current
        record and up to date across commits; ``RedisStore`` keeps them aside and hands them out
        with a load that read the very same text. It calls ``values()`` only if it will keep them,
        and may call it under its own lock: it is cheap (no decoding) and never calls the store.
        The default keeps nothing, and the middleware offers nothing to a store that does not
        override it.
        """

    @abstractmethod
    async def destroy(self, key: str) -> bool:
        """Delete the session and tell its subscribers (``destroyed``). False if there was none."""

    @abstractmethod
    async def regenerate(self, key: str, new_key: str, *, ttl: float) -> Record | None:
        """Move the session to ``new_key`` in one step, with a new version.

        Subscribers of the old key are told ``regenerated`` and their
        subscriptions end: they are not carried over to the new key.
        Returns None if there is no session under ``key``.
        """

    @abstractmethod
    async def watch(self, key: str, subscription: Subscription) -> None:
        """Start delivering the session's updates to ``subscription``, a snapshot first.

        Raises ``SessionNotFound`` if there is no such session.
        """

    @abstractmethod
    async def unwatch(self, key: str, subscription: Subscription) -> None:
        """Stop delivering updates to ``subscription``."""

    async def aclose(self) -> None:  # noqa: B027 - optional for stores without background work
        """Stop background work and end every subscription. The store stays usable and restarts on demand."""

    @asynccontextmanager
    async def subscribe(self, key: str, *, max_queue: int = 64) -> AsyncIterator[Subscription]:
        """Updates of one session, a snapshot first; see ``LiveSession.subscribe``."""
        subscription = Subscription(max_queue)
        await self.watch(key, subscription)
        try:
            yield subscription
        finally:
            await self.unwatch(key, subscription)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
