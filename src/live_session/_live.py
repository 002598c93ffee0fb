"""``live_session(conn)``: read, write and watch the session from any connection, at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from starlette.requests import HTTPConnection

from ._broadcast import Subscription
from ._errors import SessionConflict, SessionError, SessionNotFound
from ._ids import new_session_id, store_key
from ._locks import KeyedLocks
from ._session import Session
from ._store import Record, Store
from ._values import check_key, check_value, decode_all, encode, encode_all

if TYPE_CHECKING:
    from ._middleware import LiveSessionMiddleware

__all__ = ["Connection", "LiveSession", "create_session", "ensure_session", "live_session"]

SCOPE_KEY = "live_session"

_modify_locks = KeyedLocks()


class Connection:
    """What the middleware knows about one request or WebSocket; kept in ``scope["live_session"]``."""

    __slots__ = (
        "cookie",
        "had_cookie",
        "handle",
        "issued",
        "key",
        "middleware",
        "record",
        "response_started",
        "session",
        "session_id",
        "tasks",
        "websocket",
    )

    def __init__(
        self,
        middleware: LiveSessionMiddleware,
        session: Session,
        session_id: str | None,
        key: str | None,
        record: Record | None,
        websocket: bool,
        had_cookie: bool,
        issued: int,
    ) -> None:
        self.middleware = middleware
        self.session = session
        self.session_id = session_id
        self.key = key
        self.record = record
        self.websocket = websocket
        self.had_cookie = had_cookie
        self.issued = issued
        self.response_started = False
        # What the response must do with the cookie: set it (new or rotated id), expire it, or leave it.
        self.cookie: Literal["set", "expire"] | None = None
        self.handle: LiveSession | None = None
        # Background work that lives as long as this connection (see ``spawn``).
        self.tasks: set[asyncio.Task[None]] | None = None

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` until it ends or the WebSocket does: the middleware cancels it when the app returns."""
        task = asyncio.get_running_loop().create_task(work)
        if self.tasks is None:
            self.tasks = set()
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        tasks = list(self.tasks or ())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def adopt(self, session_id: str | None) -> None:
        self.session_id = session_id
        self.key = store_key(session_id) if session_id is not None else None


async def create_session(
    store: Store, data: Mapping[str, Any], ttl: float, lifetime: float | None = None
) -> tuple[str, Record]:
    """Store ``data`` as a new session under a fresh id; returns the id and the stored record.

    Raises TypeError (naming the key) for a value that is not JSON-compatible, and
    SessionTooLarge past the store's limit; nothing is stored then.
    """
    session_id = new_session_id()
    record = await store.commit(store_key(session_id), encode_all(data), (), ttl=ttl, create=True, lifetime=lifetime)
    assert record is not None  # create=True always yields a record
    return session_id, record


def live_session(conn: HTTPConnection) -> LiveSession:
    """The live handle of a ``Request`` or ``WebSocket`` served under ``LiveSessionMiddleware``.

    Writes through it are stored at once, atomically, and reach every
    subscriber of the session, in every tab::

        @app.websocket_route("/ws")
        async def cart(websocket):
            live = live_session(websocket)
            await websocket.accept()
            await live.put("theme", "dark")
    """
    state = conn.scope.get(SCOPE_KEY)
    if not isinstance(state, Connection):
        raise SessionError("live_session() needs LiveSessionMiddleware installed in front of this route")
    if state.handle is None:
        state.handle = LiveSession(state)
    return state.handle


def live_session_of(session: Mapping[str, Any]) -> LiveSession:
    """The live handle of the connection whose ``scope["session"]`` is ``session``.

    For integrations that are handed the session dict but not the request
    (a PyView ``mount`` on the page's first, HTTP, render).
    """
    state = getattr(session, "_connection", None)
    if not isinstance(state, Connection):
        raise SessionError("this session does not come from LiveSessionMiddleware; is the middleware installed?")
    if state.handle is None:
        state.handle = LiveSession(state)
    return state.handle


async def ensure_session(request: HTTPConnection) -> LiveSession:
    """Make sure the request has a stored session and that the response sets its cookie.

    Call it when rendering a page whose live connection (WebSocket or event
    stream) will need the session, so that connection always has one.
    """
    live = live_session(request)
    await live._ensure()
    return live


class LiveSession:
    """Read, write and subscribe to one connection's session; see ``live_session()``."""

    # modify(): compare-and-set attempts, and the backoff between them (seconds).
    max_attempts = 64
    backoff_base = 0.001
    backoff_cap = 0.05

    def __init__(self, state: Connection) -> None:
        self._state = state
        self._view: MappingProxyType[str, Any] | None = None

    # -- reading --

    @property
    def exists(self) -> bool:
        """Whether the connection has a session (it may still have expired in the store since)."""
        return self._state.key is not None

    @property
    def data(self) -> Mapping[str, Any]:
        """The contents as this connection last saw them (read-only; ``await refresh()`` to re-read)."""
        if self._view is None:
            record = self._state.record
            self._view = MappingProxyType(decode_all(record.data) if record is not None else {})
        return self._view

    @property
    def version(self) -> int:
        record = self._state.record
        return record.version if record is not None else 0

    async def refresh(self) -> Mapping[str, Any]:
        """Re-read the session from the store (without extending its lifetime)."""
        record = await self._store.load(self._key())
        if record is None:
            self._lost()
        self._seen(record)
        return self.data

    # -- writing --

    async def put(self, key: str, value: Any) -> None:
        """Set one key, stored and broadcast at once."""
        check_value(check_key(key), value)
        await self._commit({key: encode(value)}, ())

    async def update(self, values: Mapping[str, Any] = MappingProxyType({}), /, **kwargs: Any) -> None:
        """Set several keys in one atomic change."""
        changes = encode_all({**values, **kwargs})
        if changes:
            await self._commit(changes, ())

    async def delete(self, *keys: str) -> None:
        """Delete keys (those absent are ignored), in one atomic change."""
        for key in keys:
            check_key(key)
        if keys:
            await self._commit({}, keys)

    async def clear(self) -> None:
        """Delete every key. The session id lives on (unlike ``destroy()``)."""
        await self.modify(dict.clear)

    async def modify(self, fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """Atomic read-modify-write: ``fn`` changes a copy of the contents in place.

        ``fn`` must be synchronous and may run more than once. Concurrent
        ``modify`` calls in this process queue up; across processes the commit
        is a compare-and-set on the version, retried with randomised backoff,
        and ``SessionConflict`` is raised only if the retry budget runs out.
        Returns the contents as committed::

            await live.modify(lambda data: data.update(count=data.get("count", 0) + 1))
        """
        key = self._key()
        store = self._store
        async with _modify_locks.hold(key):
            for attempt in range(self.max_attempts):
                record = await store.load(key)
                if record is None:
                    self._lost()
                data = decode_all(record.data)
                fn(data)
                encoded = encode_all(data)
                changes = {name: text for name, text in encoded.items() if record.data.get(name) != text}
                removed = [name for name in record.data if name not in data]
                if not changes and not removed:
                    self._seen(record)
                    return data
                try:
                    committed = await store.commit(
                        key, changes, removed, ttl=self._ttl, expected_version=record.version, base=record
                    )
                except SessionConflict:
                    delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
                    await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not secrecy
                    continue
                if committed is None:
                    self._lost()
                self._seen(committed)
                return data
        raise SessionConflict(f"modify() gave up after {self.max_attempts} conflicting attempts")

    # -- watching --

    def subscribe(self, *, max_queue: int = 64) -> AbstractAsyncContextManager[Subscription]:
        """Updates of this session: a ``snapshot`` first, then one per change, in version order.

        ``max_queue`` bounds what waits for a slow consumer; past it, updates
        are merged so the consumer skips to the newest state. The iteration
        ends after ``destroyed``, ``expired`` or ``regenerated``, or when the
        store closes::

            async with live.subscribe() as updates:
                async for update in updates:
                    await websocket.send_json(update.session)
        """
        return self._store.subscribe(self._key(), max_queue=max_queue)

    # -- the id --

    async def regenerate(self) -> None:
        """Give the session a new id (at login): same data, old id deleted, new cookie set.

        Subscribers of the old id are told ``regenerated`` and their
        subscriptions end; each page reconnects with its new cookie. Only an
        HTTP request, before its response starts, can do this (it sets a cookie).
        Without a session it does nothing: a new session always gets a fresh id.
        """
        state = self._state
        self._need_response("regenerate()")
        if state.key is None:
            return
        new_id = new_session_id()
        record = await self._store.regenerate(state.key, store_key(new_id), ttl=self._ttl)
        if record is None:
            self._lost()
        state.adopt(new_id)
        state.cookie = "set"
        self._seen(record)

    async def destroy(self) -> None:
        """End the session everywhere (at logout): deleted, every subscriber told, subscriptions ended.

        On an HTTP request whose response has not started, the cookie is
        expired too, and ``request.session`` is emptied.
        """
        state = self._state
        if state.key is not None:
            await self._store.destroy(state.key)
        state.adopt(None)
        state.record = None
        self._view = None
        if not state.websocket and not state.response_started:
            state.session._reset({}, {})
            state.cookie = "expire" if state.had_cookie else None

    # -- internals --

    @property
    def _store(self) -> Store:
        return self._state.middleware.store

    @property
    def _ttl(self) -> float:
        return self._state.middleware.idle_timeout

    def _key(self) -> str:
        key = self._state.key
        if key is None:
            raise SessionNotFound(
                "this connection has no session; call `await ensure_session(request)` "
                "when rendering the page that opens it"
            )
        return key

    def _seen(self, record: Record) -> None:
        self._state.record = record
        self._view = None

    def _lost(self) -> NoReturn:
        raise SessionNotFound("the session no longer exists (destroyed, regenerated or expired)")

    def _need_response(self, what: str) -> None:
        if self._state.websocket:
            raise SessionError(f"{what} sets a cookie, which a WebSocket cannot do; call it in an HTTP handler")
        if self._state.response_started:
            raise SessionError(f"{what} sets a cookie, so it must be called before the response starts")

    async def _commit(self, changes: Mapping[str, str], removed: tuple[str, ...] | list[str]) -> None:
        record = await self._store.commit(self._key(), changes, removed, ttl=self._ttl, base=self._state.record)
        if record is None:
            self._lost()
        self._seen(record)

    async def _ensure(self) -> None:
        state = self._state
        if state.key is not None:
            return
        self._need_response("ensure_session()")
        session = state.session
        middleware = state.middleware
        session_id, record = await create_session(self._store, session, self._ttl, middleware.absolute_timeout)
        state.adopt(session_id)
        state.cookie = "set"
        session._reset(dict(session), record.data)
        self._seen(record)
