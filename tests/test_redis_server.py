"""The redis-server fixtures themselves: real servers that can be crashed and restarted."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio


def client(server: RedisServer) -> Redis:
    return Redis(host="127.0.0.1", port=server.port)


async def test_set_and_get(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    async with client(redis_server) as redis:
        await redis.set("key", "value")
        assert await redis.get("key") == b"value"


async def test_each_test_starts_empty(redis_url: str, redis_server: RedisServer) -> None:
    async with client(redis_server) as redis:
        assert await redis.dbsize() == 0
        await redis.set("leftover", "1")  # the next test's flush removes it


async def test_killed_persistent_server_keeps_data_on_the_same_port(fresh_redis: RedisServer) -> None:
    port = fresh_redis.port
    async with client(fresh_redis) as redis:
        await redis.set("key", "kept")  # appendfsync always: on disk before the reply
    fresh_redis.kill()
    fresh_redis.restart()
    assert fresh_redis.port == port
    async with client(fresh_redis) as redis:
        assert await redis.get("key") == b"kept"


async def test_restart_without_persistence_loses_data(fresh_redis: RedisServer) -> None:
    fresh_redis.persistence = False
    fresh_redis.restart()
    port = fresh_redis.port
    async with client(fresh_redis) as redis:
        await redis.set("key", "lost")
    fresh_redis.kill()
    fresh_redis.restart()
    assert fresh_redis.port == port
    async with client(fresh_redis) as redis:
        assert await redis.get("key") is None
