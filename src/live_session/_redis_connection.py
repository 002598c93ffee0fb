"""redis-py's connections, used one command at a time, without its client and pool layers.

On every request a session store pays what redis-py's asyncio client costs around a round trip:
the client's retry and observability wrappers, the pool's lock, counters and its check for unread
data, a send wrapped in ``asyncio.wait_for`` (on Python 3.11, one more Task per command) and
command packing in Python. Measured here (benchmarks/README.md), that is about half of a GET
round trip on 127.0.0.1 when the process is not already busy: 122 µs through the client, 64 µs
this way. What stays redis-py's: connecting (TLS, AUTH, SELECT, HELLO), the reply parser and its
error classes.

- ``connection_class(base)``: ``base`` with commands packed by hiredis's C packer and a send that
  writes to the transport at once, waiting (within ``socket_timeout``) only when the kernel did
  not take it all or the connection is closing.
- ``Connections``: one event loop's idle connections. ``call()`` runs one command on an idle
  connection (or a new one), at most ``size`` at once, and retries the errors it is told to. A
  connection goes back to the idle list only after a whole reply was read, so it never holds a
  stray one; after anything else it is closed. An idle connection the server has closed, or that
  its pool no longer owns (under Sentinel: one to a former primary), is dropped unused; after a
  connection error or a timeout every idle one is (they likely share the fate: a restart, a
  failover, a network gone silent), and a retry always runs on a new one.

Pub/sub still goes through redis-py's client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - the redis extra brings hiredis
    _pack = None

__all__ = ["Busy", "Connections", "Slots", "connection_class"]


class Busy(TimeoutError):
    """No connection became free in time: every one stayed busy."""


_classes: dict[type[Any], type[Any]] = {}


def connection_class(base: type[Any]) -> type[Any]:
    """``base`` (a redis-py asyncio connection class) with the quicker packing and send."""
    fast = _classes.get(base)
    if fast is not None:
        return fast
    pack = _pack

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # hiredis packs str (as UTF-8), bytes and int exactly as redis-py does; anything else, or
        # another encoding, goes to redis-py's packer. A command name with a space ("CLIENT
        # SETINFO") is split by redis-py's packer, so it goes there too.
        encoder, name = self.encoder, args[0]
        utf8 = encoder.encoding == "utf-8" and encoder.encoding_errors == "strict"
        if pack is not None and utf8 and type(name) is str and " " not in name:
            for arg in args:
                kind = type(arg)
                if kind is not str and kind is not bytes and kind is not int:
                    break
            else:
                return [pack(args)]
        packed: list[bytes] = base.pack_command(self, *args)
        return packed

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)
        if writer is None or isinstance(command, str | bytes):
            await base.send_packed_command(self, command, check_health)  # not connected yet, say
            return
        if check_health and self.health_check_interval:
            await self.check_health()
        # What redis-py does, less the Task its asyncio.wait_for starts for every send: the kernel
        # takes a command whole nearly always, and drain() (under the timeout) is then not needed.
        try:
            writer.writelines(command)
            transport = writer.transport
            if transport.is_closing() or transport.get_write_buffer_size():
                async with asyncio.timeout(self.socket_timeout or None):
                    await writer.drain()  # raises the connection's error if it is closing
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as error:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {error}") from error
        except BaseException:
            await self.disconnect(nowait=True)  # a command half sent: the connection is unusable
            raise

    fast = type(base.__name__, (base,), {"pack_command": pack_command, "send_packed_command": send_packed_command})
    _classes[base] = fast
    return fast


class Slots:
    """At most ``size`` operations in flight, the others waiting their turn: an ``asyncio.Semaphore``
    without what it costs every call (acquire and the check before it each scan the waiters)."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self, timeout: float) -> None:
        """Wait for a slot (when ``free`` is 0): ``release`` hands it over. ``Busy`` after ``timeout``."""
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError as error:
            self._give_up(future)
            raise Busy(f"no connection became free within {timeout} s") from error
        except BaseException:
            self._give_up(future)
            raise

    def _give_up(self, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled():
            self.release()  # handed over just as this gave up: pass it on
        else:
            future.cancel()
            with contextlib.suppress(ValueError):
                self.waiters.remove(future)

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class Connections:
    """One event loop's connections to one server, made by ``pool`` (its settings and class)."""

    def __init__(self, pool: ConnectionPool, *, size: int, wait: float, retries: int, backoff: AbstractBackoff) -> None:
        self._pool = pool  # only to make connections: the pool's own list is not used
        self._idle: list[Any] = []
        self._slots = Slots(size)
        self._wait = wait
        self._retries = retries
        self._backoff = backoff
        self._closed = False
        # A Sentinel pool records where the primary is, once a connection has asked the sentinels.
        self._follows_primary = isinstance(pool, SentinelConnectionPool) and pool.is_master

    def _current(self, connection: Any) -> bool:
        """False for a connection to a former primary (after a failover), which may still take writes."""
        if not self._follows_primary:
            return True
        primary = self._pool.master_address  # type: ignore[attr-defined]
        return primary is None or (connection.host, connection.port) == primary

    async def call(self, retry_on: tuple[type[Exception], ...], *command: Any) -> Any:
        """The reply to ``command`` as the parser gives it (no response callbacks: HGETALL is a flat list).

        Raises redis-py's errors, after up to ``retries`` retries (with backoff, each on a new
        connection) of those ``retry_on`` names, or ``Busy`` when no slot frees within ``wait`` seconds.
        """
        slots = self._slots
        if slots.free:
            slots.free -= 1
        else:
            await slots.wait(self._wait)
        try:
            failures = 0
            while True:
                try:
                    return await self._once(command, fresh=failures > 0)
                except retry_on:
                    failures += 1
                    if failures > self._retries:
                        raise
                await asyncio.sleep(self._backoff.compute(failures))
        finally:
            slots.release()

    async def _once(self, command: tuple[Any, ...], *, fresh: bool) -> Any:
        connection = await self._take(fresh)
        whole = False  # a whole reply was read: the connection is ready for the next command
        try:
            if not connection.is_connected:
                await connection.connect()
            await connection.send_packed_command(connection.pack_command(*command), check_health=False)
            try:
                reply = await connection.read_response()
            except ResponseError:
                whole = True  # an error reply, read whole
                raise
            whole = True
            return reply
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self._drop_idle()  # they likely went the way this one did
            raise
        finally:
            if whole and not self._closed and self._current(connection):
                self._idle.append(connection)
            else:
                await connection.disconnect(nowait=True)

    async def _take(self, fresh: bool) -> Any:
        """The most recently used idle connection the server has not closed, or a new one."""
        idle = self._idle
        while idle and not fresh:
            connection = idle.pop()
            # Owned: made in this process, and, under Sentinel, to the primary the pool knows now.
            if _open(connection) and self._current(connection):
                return connection
            await connection.disconnect(nowait=True)
        return self._pool.make_connection()  # type: ignore[no-untyped-call]

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect(nowait=True)

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their command ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.disconnect()


def _open(connection: Any) -> bool:
    """Whether an idle connection still looks open: a close or an error the event loop already saw, no round trip."""
    reader, writer = getattr(connection, "_reader", None), getattr(connection, "_writer", None)
    if reader is None or writer is None:
        return True  # not connected (yet): connect() makes it so
    return not (reader.at_eof() or reader.exception() is not None or writer.transport.is_closing())
