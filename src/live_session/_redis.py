"""``RedisStore``: sessions in Redis (or Valkey), shared by every process and host that uses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import _redis_scripts as scripts
from ._broadcast import Hub, Subscription
from ._decoded import DecodedCache
from ._errors import SessionConflict, SessionNotFound, SessionTooLarge, StoreUnavailable
from ._redis_connection import Busy, Connections, connection_class
from ._store import Record, Store
from ._updates import Reason, SessionUpdate
from ._values import decode

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisStore needs the redis package: pip install 'live-session[redis]'") from error

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

__all__ = ["RedisStore"]

logger = logging.getLogger("live_session")

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_BACKOFF = 1.0
_MAX_CONNECTIONS = 100  # commands in flight per event loop
_READ_RETRY_ON = (RedisConnectionError, RedisTimeoutError)
_WRITE_RETRY_ON = (RedisConnectionError,)
_BACKOFF = ExponentialWithJitterBackoff(base=0.01, cap=0.5)
_CHECK_SLICE = 500  # sessions per script of the expiry check: about 0.3 ms of Redis's time each
# How long a measured offset between this host's steady clock and the server's clock is trusted.
_CLOCK_CHECK = 60.0
# Reads and commits set the idle lifetime only when its end is further than this share of it (at most
# a minute) from where it belongs: a session then ends between idle_timeout minus that slack and
# idle_timeout after its last use.
_SLACK_SHARE = 0.05
_MAX_SLACK_MS = 60_000


class _Watched:
    """What this event loop last delivered for one session, to order, dedupe and resync updates."""

    __slots__ = ("data", "version")

    def __init__(self) -> None:
        self.data: Mapping[str, str] = {}
        self.version = -1


class _LoopState:
    """Everything tied to one event loop: its client, its pub/sub listener and what it watches."""

    def __init__(self, connections: Connections, checker: Connections, client: aioredis.Redis) -> None:
        self.connections = connections  # reads and writes, one command each
        self.checker = checker  # the listener's expiry check
        self.client = client  # the same pool through redis-py's client, for pub/sub
        self.unsubscribe: set[str] = set()
        self.hub = Hub()
        self.watched: dict[str, _Watched] = {}
        self.listener: asyncio.Task[None] | None = None
        self.pubsub: PubSub | None = None
        self.connected = asyncio.Event()
        self.confirmations: dict[str, asyncio.Future[None]] = {}
        self.closer: AsyncGenerator[None, None] | None = None
        # Server time (ms) minus this host's steady clock (ms), and when it was measured (s).
        self.clock_offset = 0.0
        self.clock_checked = -math.inf
        # Sessions whose updates arrived with a gap in the versions: re-read them.
        self.stale: set[str] = set()
        # Since when (loop time) the listener's reader has been waiting on the pub/sub connection
        # with nothing come yet (None while it is busy with what came), and whether it should
        # check for expired sessions at its next wake-up.
        self.waiting_since: float | None = None
        self.check_due = False


class RedisStore(Store):
    """Sessions in Redis 6.2+ or Valkey: they survive restarts and span processes and hosts.

    Each request that reads a session costs one round trip (a plain HGETALL),
    and each commit one more (apply, bump the version, set the TTL, publish, in
    one Lua script). Expiry is Redis's own TTL. Reads and commits set the idle
    lifetime only when it is more than 5 % of it (at most a minute) away from
    where it belongs, so a session ends
    between ``idle_timeout`` minus that and ``idle_timeout`` after its last
    use. Broadcasts carry only what changed. Each process keeps one pub/sub
    connection (per event loop) shared by all its subscribers, reconnects with
    backoff after an outage, and then re-reads every watched session so no view
    stays stale. The decoded values of the sessions this process used last are
    kept, up to ``decoded_cache_size`` bytes of their JSON (0: none), and handed
    out only with a load that read the very same text (see ``keep_decoded``).
    While Redis is down, reads and writes raise ``StoreUnavailable``::

        store = RedisStore("redis://localhost:6379/0")
        app = Starlette(middleware=[Middleware(LiveSessionMiddleware, secret_key=KEY, store=store)])

    Pass ``client=`` to use an existing ``redis.asyncio.Redis`` instead of a URL.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = "live-session:",
        max_session_size: int = 64 * 1024,
        expiry_check_interval: float = 1.0,
        socket_timeout: float = 5.0,
        decoded_cache_size: int = 1024 * 1024,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisStore needs exactly one of url= or client=")
        pool = client.connection_pool if client is not None else None
        if isinstance(pool, SentinelConnectionPool) and not pool.is_master:
            raise ValueError("RedisStore writes, so it needs the primary: pass Sentinel.master_for(), not slave_for()")
        if not (expiry_check_interval > 0 and math.isfinite(expiry_check_interval)):
            raise ValueError(f"expiry_check_interval must be a positive number, got {expiry_check_interval!r}")
        if max_session_size < 2:
            raise ValueError(f"max_session_size must be at least 2 bytes, got {max_session_size!r}")
        self.url = url
        self.prefix = prefix
        self.max_session_size = max_session_size
        self.expiry_check_interval = expiry_check_interval
        self.socket_timeout = socket_timeout
        # Decoded values of the sessions this process used last, handed out with the very text they came from.
        self._decoded = DecodedCache(decoded_cache_size)
        self._given = client
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
        self._states = weakref.WeakKeyDictionary()
        # The loop last served and its state: nearly every call comes from the same loop, and this spares
        # it the weak reference each WeakKeyDictionary lookup makes. (A state already holds its loop.)
        self._last: tuple[asyncio.AbstractEventLoop, _LoopState] | None = None

    # -- connections, per event loop --

    def _new_state(self) -> _LoopState:
        # Connections retry nothing themselves: reads and writes retry in Connections.call (each
        # with its own policy, see _call), and a pub/sub connection redis-py silently re-made would
        # hide an outage, and with it the lost messages and the resync they call for.
        options: dict[str, Any] = {
            "retry": Retry(_BACKOFF, retries=0, supported_errors=()),  # not even the one reconnect redis-py tries
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "decode_responses": False,  # replies are parsed here, as bytes, whatever a given client decodes
        }
        pool: aioredis.ConnectionPool
        if self.url is not None:
            pool = aioredis.ConnectionPool.from_url(self.url, **options)
            pool.connection_class = connection_class(pool.connection_class)
        else:
            # A given client serves as a template: its pool is tied to the loop it was used in,
            # so each loop gets its own pool with the same connection settings.
            assert self._given is not None
            template = self._given.connection_pool
            kwargs = {**template.connection_kwargs, **options}
            kwargs["connection_class"] = connection_class(template.connection_class)
            if isinstance(template, SentinelConnectionPool):
                # The sentinels' own connections are tied to a loop too: this loop asks its own.
                sentinels = _sentinels_like(template.sentinel_manager)
                kwargs.update(is_master=template.is_master, check_connection=template.check_connection)
                pool = SentinelConnectionPool(template.service_name, sentinels, **kwargs)  # type: ignore[no-untyped-call]
            else:
                pool = type(template)(**kwargs)
        # Past _MAX_CONNECTIONS commands in flight, the next waits (at most socket_timeout) for one to end.
        connections = Connections(pool, size=_MAX_CONNECTIONS, wait=self.socket_timeout, retries=3, backoff=_BACKOFF)
        # The listener's expiry check has a connection of its own, as requests may hold all the others.
        checker = Connections(pool, size=1, wait=self.socket_timeout, retries=0, backoff=_BACKOFF)
        return _LoopState(connections, checker, aioredis.Redis(connection_pool=pool))

    async def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = self._new_state()
            # An async generator started in this loop is finalised by the loop's shutdown
            # (asyncio.run, anyio, uvicorn all call shutdown_asyncgens): the one hook that lets
            # connections close cleanly even when the loop belongs to a single TestClient request.
            closer = state.closer = self._close_at_loop_shutdown(loop, state)
            await anext(closer)
        self._last = (loop, state)
        return state

    async def _close_at_loop_shutdown(
        self, loop: asyncio.AbstractEventLoop, state: _LoopState
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close_state(loop, state)

    async def _close_state(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        state.hub.close_all()
        state.watched.clear()
        task, state.listener = state.listener, None
        while task is not None and not task.done():
            # Re-cancel until it ends: on Python 3.11 a cancellation landing in redis-py's
            # asyncio.wait_for just as a send completes can be swallowed.
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        if self._states.get(loop) is state:
            del self._states[loop]
        if self._last is not None and self._last[1] is state:
            self._last = None
        await state.connections.aclose()
        await state.checker.aclose()
        await state.client.aclose(close_connection_pool=True)
        pool = state.client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()

    def _hash(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def _channel(self, key: str) -> str:
        return f"{self.prefix}c:{key}"

    async def _call(self, state: _LoopState, write: bool, *command: Any) -> Any:
        """Run one command; outages, and no connection free in time, become StoreUnavailable.

        Reads retry connection errors and timeouts; writes retry only connection errors, because a
        timed-out script may still have run (and commits carry an id, so a retried one that had
        run is not applied twice).
        """
        with _store_errors():
            return await state.connections.call(_WRITE_RETRY_ON if write else _READ_RETRY_ON, *command)

    async def _run(
        self, script: str, keys: list[str], args: list[Any], *, write: bool = False, state: _LoopState | None = None
    ) -> Any:
        """Run a script as ``_call`` runs a command."""
        if state is None:
            state = await self._state()
        with _store_errors():
            return await _script(state.connections, _WRITE_RETRY_ON if write else _READ_RETRY_ON, script, keys, args)

    async def _server_now(self, state: _LoopState) -> int:
        """An estimate of the server's clock (ms): this host's steady clock plus an offset re-measured every minute.

        It only decides whether a lifetime needs setting; the scripts set it by the server's own clock.
        """
        now = _steady()
        if now - state.clock_checked > _CLOCK_CHECK:
            seconds, micros = await self._call(state, False, "TIME")
            after = _steady()
            # The server read its clock somewhere in the round trip: take the middle.
            state.clock_offset = int(seconds) * 1000 + int(micros) / 1000 - (now + after) * 500
            state.clock_checked = now = after
        return int(now * 1000 + state.clock_offset)

    # -- the contract --

    async def load(self, key: str, *, ttl: float | None = None) -> Record | None:
        state = await self._state()
        name = self._hash(key)
        fields = await self._call(state, False, "HGETALL", name)
        if not fields:
            return None
        data: dict[str, str] = {}
        version = ends = deadline = None
        # A flat list of fields and values (RESP2), or a map from a client speaking RESP3.
        pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
        for field, value in pairs:
            if field[:2] == b"k:":
                data[field[2:].decode()] = value.decode()
            elif field == b"_v":
                version = int(value)
            elif field == b"_e":
                ends = int(value)
            elif field == b"_d":
                deadline = int(value)
        if version is None:
            return None  # not a session record
        if ttl is not None:
            # Set the idle lifetime only when its end is more than the slack away from where it
            # belongs: most reads are then one plain HGETALL, and a session in use still never ends
            # before its time (less the slack).
            ttl_ms = _ms(ttl)
            now = await self._server_now(state)
            wanted = now + ttl_ms if deadline is None else min(now + ttl_ms, deadline)
            off = ends is None or abs(ends - wanted) > _slack(ttl_ms)
            if off and not await self._run(scripts.TOUCH, [name], [ttl_ms], state=state):
                return None  # gone since the read
        return Record(data, version, self._decoded.get(key, data))

    def keep_decoded(self, key: str, record: Record, values: Callable[[], Mapping[str, Any] | None]) -> None:
        if record.decoded is None:
            self._decoded.put(key, record.data, values)

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
        state = await self._state()
        if create:
            base = None
        ttl_ms = _ms(ttl)
        args: list[Any] = [
            ttl_ms,
            int(create),
            -1 if expected_version is None else expected_version,
            int(drop_if_empty),
            self.max_session_size,
            scripts.FORMAT,
            _commit_id(),  # lets a retried commit see it already ran
            "" if lifetime is None else _ms(lifetime),
            await self._server_now(state),
            -1 if base is None else base.version,
            _slack(ttl_ms),
            len(changes),
        ]
        for name, text in changes.items():
            args += (name, text)
        args.extend(removed)
        reply = await self._run(scripts.COMMIT, [self._hash(key), self._channel(key)], args, write=True, state=state)
        status = reply[0]
        if status == b"ok":
            if len(reply) > 3:  # the session changed since `base`: the script sent what it holds
                return Record(_pairs(reply[3]), int(reply[1]))
            data = dict(base.data) if base is not None else {}
            for name in removed:
                data.pop(name, None)
            data.update(changes)
            return Record(data, int(reply[1]))
        if status == b"missing":
            return None
        if status == b"dropped":
            return Record({}, int(reply[1]))
        if status == b"conflict":
            raise SessionConflict(f"session changed (version {reply[1]}, expected {expected_version})")
        if status == b"toolarge":
            raise SessionTooLarge(
                f"session would be {reply[1]} bytes serialised, over max_session_size={self.max_session_size}"
            )
        raise AssertionError(f"unexpected reply from the commit script: {reply!r}")  # pragma: no cover

    async def destroy(self, key: str) -> bool:
        self._decoded.discard(key)
        return bool(await self._run(scripts.DESTROY, [self._hash(key), self._channel(key)], [], write=True))

    async def regenerate(self, key: str, new_key: str, *, ttl: float) -> Record | None:
        state = await self._state()
        keys = [self._hash(key), self._hash(new_key), self._channel(key)]
        args = [_ms(ttl), scripts.FORMAT, _commit_id()]
        reply = await self._run(scripts.REGENERATE, keys, args, write=True, state=state)
        self._decoded.discard(key)
        if not reply:
            return None
        return Record(_pairs(reply[1]), int(reply[0]))

    async def watch(self, key: str, subscription: Subscription) -> None:
        state = await self._state()
        self._ensure_listener(state)
        watched = state.watched.setdefault(key, _Watched())
        state.hub.add(key, subscription)
        try:
            await self._subscribe(state, key)
            record = await self.load(key)
        except BaseException:
            await self.unwatch(key, subscription)
            raise
        if record is None:
            await self.unwatch(key, subscription)
            raise SessionNotFound("no session to subscribe to (it does not exist or has expired)")
        # Newer than what this loop's subscribers saw (the listener may lag): give it to them too,
        # rather than moving the version on silently and making them drop the message when it lands.
        self._catch_up(state, key, watched, record)
        subscription.start(SessionUpdate(record.version, "snapshot", record.data, frozenset(record.data)))

    async def unwatch(self, key: str, subscription: Subscription) -> None:
        state = self._states.get(asyncio.get_running_loop())
        if state is None:
            return
        state.hub.discard(key, subscription)
        if not state.hub.has_subscribers(key) and state.watched.pop(key, None) is not None:
            pubsub = state.pubsub
            if pubsub is not None and state.connected.is_set():
                with contextlib.suppress(*_DOWN):  # the listener resubscribes only what is still watched
                    await pubsub.unsubscribe(self._channel(key))

    async def aclose(self) -> None:
        running = asyncio.get_running_loop()
        for loop, state in list(self._states.items()):
            if loop is running:
                if state.closer is not None:
                    await state.closer.aclose()
            elif not loop.is_closed():
                state.hub.close_all()  # thread-safe; that loop closes its own connections
                task = state.listener
                if task is not None:
                    loop.call_soon_threadsafe(task.cancel)

    # -- the pub/sub listener: one per event loop, supervised --

    async def _subscribe(self, state: _LoopState, key: str) -> None:
        """Subscribe to the session's channel and wait until Redis confirms it."""
        channel = self._channel(key)
        deadline = self.socket_timeout
        try:
            async with asyncio.timeout(deadline):
                while True:
                    await state.connected.wait()
                    pubsub = state.pubsub
                    assert pubsub is not None
                    confirmed = state.confirmations.get(channel)
                    if confirmed is None or confirmed.done():
                        confirmed = state.confirmations[channel] = asyncio.get_running_loop().create_future()
                    try:
                        await pubsub.subscribe(channel)
                        await asyncio.shield(confirmed)
                    except (*_DOWN, StoreUnavailable):
                        continue  # the listener is reconnecting; it resubscribes what is watched
                    return
        except TimeoutError as error:
            raise StoreUnavailable("Redis did not confirm the subscription in time") from error

    def _ensure_listener(self, state: _LoopState) -> None:
        if state.listener is None or state.listener.done():
            state.listener = asyncio.get_running_loop().create_task(
                self._listen(state), name="live-session redis listener"
            )

    async def _listen(self, state: _LoopState) -> None:
        backoff = 0.05
        while True:
            pubsub = state.client.pubsub()
            try:
                # A control channel keeps the connection subscribed even when nothing is watched.
                channels = [f"{self.prefix}control", *(self._channel(key) for key in state.watched)]
                await pubsub.subscribe(*channels)
                # Resync only once Redis confirms the subscriptions, or a change landing between
                # the resync's read and the SUBSCRIBE would be missed.
                confirmed = 0
                async with asyncio.timeout(self.socket_timeout):
                    while confirmed < len(channels):
                        message = await pubsub.get_message(timeout=self.socket_timeout)
                        if message is not None:
                            confirmed += message["type"] == "subscribe"
                            self._handle(state, message)
                state.pubsub = pubsub
                state.connected.set()
                await self._resync(state)
                backoff = 0.05
                await self._pump(state, pubsub)
            except asyncio.CancelledError:
                raise
            except _DOWN as error:
                logger.warning("Redis pub/sub connection lost (%s); reconnecting in %.2f s", error, backoff)
            except Exception:
                logger.exception("Redis listener failed; restarting in %.2f s", backoff)
            finally:
                state.connected.clear()
                state.pubsub = None
                for future in state.confirmations.values():
                    if not future.done():
                        future.set_exception(StoreUnavailable("Redis pub/sub connection lost"))
                        future.exception()  # retrieved: the subscriber retries or reports it
                state.confirmations.clear()
                with contextlib.suppress(Exception):  # the connection is already broken
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _pump(self, state: _LoopState, pubsub: PubSub) -> None:
        """Keep time while a reader task hands out messages; return or raise when the connection ends.

        The reader blocks on the connection with no timeout of its own, so a message reaches its
        subscribers without the cost of arming and disarming a timer per read. Every interval this
        task pings (the reply wakes the reader, which then checks for expired sessions) and gives
        up on a connection on which the reader has waited for a few intervals with nothing, not
        even a reply, coming (a dead peer sends no RST). Time the reader spends busy (re-reading
        sessions, say) does not count: the connection is not what is slow then.
        """
        loop = asyncio.get_running_loop()
        interval = self.expiry_check_interval
        state.waiting_since = None
        reader = loop.create_task(self._read(state, pubsub), name="live-session redis reader")
        try:
            while True:
                await asyncio.wait([reader], timeout=interval)
                if reader.done():
                    reader.result()  # its error, if any, is the listener's
                    return
                since = state.waiting_since
                if since is not None and loop.time() - since > 3 * interval + self.socket_timeout:
                    raise RedisConnectionError("no reply on the pub/sub connection")
                state.check_due = True
                await pubsub.ping()
        finally:
            reader.cancel()
            # Its error, if it has one, is retrieved even if this task is cancelled while waiting.
            reader.add_done_callback(_retrieve)
            await asyncio.wait([reader], timeout=self.socket_timeout)

    async def _read(self, state: _LoopState, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        while state.pubsub is pubsub:  # until the listener lets go of this connection, even uncancelled
            state.waiting_since = loop.time()
            message = await pubsub.get_message(timeout=None)
            state.waiting_since = None
            if message is not None:
                self._handle(state, message)
                # Let the subscribers just woken have it before this task goes back to reading.
                await asyncio.sleep(0)
            if state.stale:
                stale, state.stale = state.stale, set()
                await self._resync(state, stale)
            if state.unsubscribe:
                channels = [
                    channel for channel in state.unsubscribe if channel[len(self._channel("")) :] not in state.watched
                ]
                state.unsubscribe.clear()
                if channels:
                    await pubsub.unsubscribe(*channels)
            if state.check_due:
                state.check_due = False
                await self._check_expiry(state)

    def _handle(self, state: _LoopState, message: dict[str, Any]) -> None:
        channel = _text(message["channel"])
        if message["type"] == "subscribe":
            confirmed = state.confirmations.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        if message["type"] != "message":
            return
        key = channel[len(self._channel("")) :]
        watched = state.watched.get(key)
        if watched is None:
            return
        payload = decode(_text(message["data"]))
        version, reason, removed = int(payload["v"]), payload["r"], payload["x"] or ()
        if version <= watched.version:
            return  # late or duplicate
        data: dict[str, str] = {}
        if reason == "regenerated":
            data.update(watched.data)  # moved, not changed: its subscribers' last view of it
        elif reason == "updated":
            # A message carries only what changed: it applies to the version just before it. Before
            # a subscriber's first read, or after a gap, the pump re-reads the session instead.
            if version != watched.version + 1 or watched.version < 0:
                state.stale.add(key)
                return
            data.update(watched.data)
            for name in removed:
                data.pop(name, None)
            data.update(payload["d"] or {})
        self._deliver(state, key, watched, version, reason, data, payload["c"] or (), removed)

    def _deliver(
        self,
        state: _LoopState,
        key: str,
        watched: _Watched,
        version: int,
        reason: Reason,
        data: Mapping[str, str],
        changed: Collection[str],
        removed: Collection[str],
    ) -> None:
        if version <= watched.version:
            return  # late or duplicate: never roll a view back
        watched.version, watched.data = version, data
        update = SessionUpdate(version, reason, data, frozenset(changed or ()), frozenset(removed or ()))
        state.hub.publish(key, update)
        if update.terminal:
            state.watched.pop(key, None)
            state.unsubscribe.add(self._channel(key))

    def _catch_up(self, state: _LoopState, key: str, watched: _Watched, record: Record) -> None:
        if record.version > watched.version:
            before = watched.data
            changed = [name for name, text in record.data.items() if before.get(name) != text]
            removed = [name for name in before if name not in record.data]
            self._deliver(state, key, watched, record.version, "updated", record.data, changed, removed)

    async def _resync(self, state: _LoopState, keys: Collection[str] | None = None) -> None:
        """Bring local subscribers to the session's current state: after (re)connecting, or a gap."""
        if keys is None:
            state.stale.clear()
            keys = list(state.watched)
        missing: list[str] = []
        for key in keys:
            watched = state.watched.get(key)
            if watched is None:
                continue
            record = await self.load(key)
            if record is None:
                missing.append(key)
            else:
                self._catch_up(state, key, watched, record)
        await self._report_expired(state, missing)

    async def _check_expiry(self, state: _LoopState) -> None:
        """Tell subscribers of sessions that Redis expired (no keyspace notifications needed)."""
        keys = list(state.watched)
        missing: list[str] = []
        # One timeout for the whole check and no retries: retries would hold the listener up to 4x
        # longer on a silent network, and the listener is what notices the outage. The sessions go
        # in slices, so that no one script holds Redis up for long.
        async with asyncio.timeout(self.socket_timeout):
            for start in range(0, len(keys), _CHECK_SLICE):
                part = keys[start : start + _CHECK_SLICE]
                gone = await _script(state.checker, (), scripts.MISSING, [self._hash(key) for key in part], [])
                missing += [part[position - 1] for position in gone]
        await self._report_expired(state, missing)

    async def _report_expired(self, state: _LoopState, missing: list[str]) -> None:
        """Tell the subscribers of sessions found missing that they expired, unless a message says otherwise."""
        if not missing:
            return
        pubsub = state.pubsub  # the listener's own (this runs in the listener task)
        assert pubsub is not None
        # A destroyed or regenerated message may still be on its way, and it tells the real reason.
        # It was queued on the pub/sub connection before the read that missed the session, so it
        # arrives before the reply to a PING sent now: read up to that reply first.
        token = secrets.token_hex(4)
        await pubsub.ping(token)
        async with asyncio.timeout(self.socket_timeout):
            while True:
                message = await pubsub.get_message(timeout=self.socket_timeout)
                if message is None:
                    continue
                if message["type"] == "pong" and _text(message["data"]) == token:
                    break
                self._handle(state, message)
        for key in missing:
            watched = state.watched.get(key)
            if watched is not None:
                self._deliver(state, key, watched, watched.version + 1, "expired", {}, (), watched.data)


# Server states in which Redis refuses work for a while: a replica after failover, out of memory,
# failing to persist, busy in a script, loading its data.
_UNAVAILABLE_REPLIES = ("READONLY", "OOM", "MISCONF", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")


def _unavailable(error: RedisError) -> Exception:
    """StoreUnavailable for an outage or a server that refuses work; other errors are bugs and stay as they are."""
    refused = isinstance(error, ReadOnlyError | OutOfMemoryError) or str(error).startswith(_UNAVAILABLE_REPLIES)
    if isinstance(error, ResponseError) and not refused:
        return error
    return StoreUnavailable(f"Redis cannot serve the request: {error}")


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Outages, servers refusing work and no connection free in time as StoreUnavailable; other errors as they are."""
    try:
        yield
    except RedisError as error:
        raise _unavailable(error) from error
    except Busy as error:
        raise StoreUnavailable("no Redis connection became free in time") from error
    except OSError as error:
        raise StoreUnavailable(f"Redis is unreachable: {error}") from error


async def _script(
    connections: Connections, retry_on: tuple[type[Exception], ...], script: str, keys: list[str], args: list[Any]
) -> Any:
    """Run ``script`` by hash: its text crosses the network only the first time a server sees it."""
    try:
        return await connections.call(retry_on, "EVALSHA", scripts.sha(script), len(keys), *keys, *args)
    except NoScriptError:
        return await connections.call(retry_on, "EVAL", script, len(keys), *keys, *args)


def _sentinels_like(manager: Sentinel) -> Sentinel:
    """A new ``Sentinel`` asking the same sentinels, with the same settings, on connections of its own."""
    addresses = [
        (sentinel.connection_pool.connection_kwargs["host"], sentinel.connection_pool.connection_kwargs["port"])
        for sentinel in manager.sentinels
    ]
    return Sentinel(  # type: ignore[no-untyped-call]
        addresses,
        min_other_sentinels=manager.min_other_sentinels,
        sentinel_kwargs=getattr(manager, "sentinel_kwargs", None),
        **manager.connection_kwargs,
    )


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: whoever ended the reader has already reported why


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000)) if seconds > 0 else 0


# Commit ids: 16 random hex digits each, drawn from the OS 32 at a time (a getrandom call per id costs
# more than the rest of a commit's arguments together). A forked child starts with none, so parent and
# child never hand out the same ones.
_spare_ids: list[str] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_spare_ids.clear)


def _commit_id() -> str:
    """A new random id for a commit or a regenerate: what ``secrets.token_hex(8)`` gives."""
    try:
        return _spare_ids.pop()
    except IndexError:  # none left (another thread may be refilling too: either way, all are fresh)
        digits = secrets.token_hex(256)
        _spare_ids.extend(digits[i : i + 16] for i in range(16, 512, 16))
        return digits[:16]


def _steady() -> float:
    """Seconds on a clock that never jumps and, on Linux, keeps counting while the host is suspended."""
    return time.clock_gettime(_STEADY_CLOCK)


_STEADY_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def _slack(ttl_ms: int) -> int:
    """How far an idle lifetime's end may be from where it belongs before a read or a commit sets it (ms)."""
    return min(int(ttl_ms * _SLACK_SHARE), _MAX_SLACK_MS)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
