"""The thin command path of RedisStore: redis-py's connections used one command at a time, without its client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from live_session import RedisStore
from live_session._redis_connection import Connections, Slots, connection_class

pytestmark = pytest.mark.anyio


@pytest.fixture
async def connections(redis_url: str) -> AsyncIterator[Connections]:
    pool = aioredis.ConnectionPool.from_url(redis_url, socket_timeout=5)
    pool.connection_class = connection_class(pool.connection_class)
    made = Connections(pool, size=4, wait=1, retries=2, backoff=NoBackoff())
    yield made
    await made.aclose()
    await pool.aclose()


async def client_ids(client: aioredis.Redis) -> set[int]:
    return {int(entry["id"]) for entry in await client.client_list()}


async def test_a_connection_is_reused_after_a_reply_and_after_an_error_reply(
    connections: Connections, redis_client: aioredis.Redis
) -> None:
    assert await connections.call((), "SET", "k", "v") == b"OK"
    assert await connections.call((), "GET", "k") == b"v"
    with pytest.raises(ResponseError, match="unknown command"):
        await connections.call((), "NO-SUCH-COMMAND")
    assert await connections.call((), "CLIENT", "ID") == await connections.call((), "CLIENT", "ID")
    assert len(await client_ids(redis_client)) == 2  # the plain client and the one connection reused


async def test_a_command_cancelled_in_flight_never_leaves_its_reply_for_the_next(
    connections: Connections, redis_client: aioredis.Redis
) -> None:
    """The connection of a cancelled command is closed, so a late reply cannot answer another command."""
    blocked = asyncio.ensure_future(connections.call((), "BLPOP", "queue", 10))
    async with asyncio.timeout(5):
        while int((await redis_client.info("clients"))["blocked_clients"]) != 1:
            await asyncio.sleep(0.01)  # polling Redis's own count, not standing in for it
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await redis_client.rpush("queue", "late")  # had the connection been kept, this would be its next reply
    assert await connections.call((), "PING") == b"PONG"
    assert await connections.call((), "GET", "nothing") is None
    assert await redis_client.lrange("queue", 0, -1) == [b"late"]  # nobody popped it: that connection was gone


async def blocked_client(client: aioredis.Redis, other_than: str | None = None) -> str:
    """The id of the connection blocked in BLPOP, once Redis reports one (other than ``other_than``)."""
    async with asyncio.timeout(5):
        while True:
            for entry in await client.client_list():
                if "b" in entry["flags"] and entry["id"] != other_than:
                    return str(entry["id"])
            await asyncio.sleep(0.01)  # polling Redis's own view, not standing in for it


async def test_a_connection_lost_mid_command_is_retried_only_for_the_errors_named(
    connections: Connections, redis_client: aioredis.Redis
) -> None:
    blocked = asyncio.ensure_future(connections.call((), "BLPOP", "queue", 10))
    await redis_client.client_kill_filter(_id=await blocked_client(redis_client))
    with pytest.raises(RedisConnectionError):  # not named: the caller gets it
        await blocked
    blocked = asyncio.ensure_future(connections.call((RedisConnectionError,), "BLPOP", "queue", 10))
    first = await blocked_client(redis_client)
    await redis_client.client_kill_filter(_id=first)
    await blocked_client(redis_client, other_than=first)  # named: run again, on a new connection
    await redis_client.rpush("queue", "item")
    assert await blocked == [b"queue", b"item"]


async def test_idle_connections_the_server_closed_are_not_used(
    connections: Connections, redis_client: aioredis.Redis
) -> None:
    """A restart, a failover or the server's idle timeout closes idle connections: they are dropped unused."""
    ids = await asyncio.gather(*(connections.call((), "CLIENT", "ID") for _ in range(4)))
    assert len(set(ids)) == 4  # four connections now idle
    for client_id in ids:
        await redis_client.client_kill_filter(_id=str(client_id))
    idle = list(connections._idle)
    async with asyncio.timeout(5):
        while not all(connection._reader.at_eof() for connection in idle):
            await asyncio.sleep(0.01)  # until the event loop has seen each close
    # No retries allowed, so this succeeds only if no closed connection was tried.
    assert await connections.call((), "PING") == b"PONG"


async def test_a_store_works_at_once_after_redis_dropped_every_connection(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """Seen closed or not yet: the first failure drops every idle connection, and the retry runs on a new one."""
    store = RedisStore(redis_url)
    try:
        await asyncio.gather(*(store.load("x") for _ in range(8)))  # eight connections left idle
        await redis_client.client_kill_filter(_type="normal", skipme=True)
        assert await store.load("x") is None
        assert await store.commit("x", {"a": "1"}, (), ttl=60, create=True) is not None
        await redis_client.client_kill_filter(_type="normal", skipme=True)
        assert await store.commit("x", {"a": "2"}, (), ttl=60) is not None
    finally:
        await store.aclose()


async def test_a_command_larger_than_the_socket_buffer_is_sent_whole(connections: Connections) -> None:
    value = b"x" * (8 * 1024 * 1024)  # the kernel does not take it at once: the send waits for the rest
    assert await connections.call((), "SET", "big", value) == b"OK"
    assert await connections.call((), "STRLEN", "big") == len(value)


async def test_commands_in_flight_are_bounded(connections: Connections, redis_client: aioredis.Redis) -> None:
    """Past ``size`` commands in flight the next waits for one to end, and gives up after ``wait``."""
    blocked = [asyncio.ensure_future(connections.call((), "BLPOP", f"q{i}", 10)) for i in range(4)]
    async with asyncio.timeout(5):
        while int((await redis_client.info("clients"))["blocked_clients"]) != 4:
            await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await connections.call((), "PING")
    waiting = asyncio.ensure_future(connections.call((), "PING"))
    await redis_client.rpush("q0", "go")
    assert await blocked[0] == [b"q0", b"go"]
    assert await waiting == b"PONG"  # the freed slot went to the waiting command
    for task in blocked[1:]:
        task.cancel()
    await asyncio.gather(*blocked[1:], return_exceptions=True)


async def test_slots_bound_operations_in_flight_and_hand_over_in_turn() -> None:
    slots = Slots(1)
    slots.free -= 1  # one operation in flight
    with pytest.raises(TimeoutError):
        await slots.wait(0.01)
    assert not slots.waiters  # a waiter that gave up is gone
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.wait(5)
        order.append(name)

    first = asyncio.ensure_future(take("first"))
    cancelled = asyncio.ensure_future(take("cancelled"))
    second = asyncio.ensure_future(take("second"))
    await asyncio.sleep(0)
    cancelled.cancel()
    slots.release()  # to first, skipping nothing yet
    await first
    slots.release()  # past the cancelled waiter, to second
    await second
    assert order == ["first", "second"] and cancelled.cancelled()
    slots.release()
    assert slots.free == 1 and not slots.waiters


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    commands = [
        ("EVALSHA", "a" * 40, 2, "k", "ch", 60_000, -1, 0, "", "é ☃", b"\x00\xff", 12_345_678_901_234),
        ("HGETALL", "live-session:s:" + "f" * 64),
        ("CLIENT SETINFO", "LIB-NAME", "redis-py"),  # a name with a space, split by redis-py
        ("SET", "k", 1.5),  # a float: redis-py's own packer
        ("SET", memoryview(b"k"), b"v"),
    ]
    for plain in (Connection, SSLConnection):
        fast = connection_class(plain)
        assert fast is connection_class(plain) and issubclass(fast, plain)
        for command in commands:
            assert b"".join(fast().pack_command(*command)) == b"".join(plain().pack_command(*command))
    latin = connection_class(Connection)(encoding="latin-1")
    assert b"".join(latin.pack_command("SET", "k", "é")) == b"".join(
        Connection(encoding="latin-1").pack_command("SET", "k", "é")
    )
