"""RedisStore against a real redis-server: across processes, through outages, and what is stored."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from websockets.asyncio.client import connect

import live_session._redis as redis_module
from live_session import RedisStore, SessionTooLarge, SessionUpdate, StoreUnavailable
from live_session._ids import store_key
from live_session._store import Record
from live_session.testing import seed_session

from .conftest import SECRET, open_live
from .redis_server import RedisServer
from .servers import free_port, live_app_server

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


async def next_update(updates: Any, timeout: float = 5) -> SessionUpdate:
    update: SessionUpdate = await asyncio.wait_for(anext(updates), timeout)
    return update


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url)
    yield store
    await store.aclose()


async def test_keys_are_hashes_of_the_id_and_values_json(redis_url: str) -> None:
    store = RedisStore(redis_url)
    cookie = await seed_session(store, {"cart": ["apple"]}, secret_key=SECRET)
    session_id = cookie.split(".")[0]
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = await client.keys("*")
        assert keys == [f"live-session:s:{hashlib.sha256(session_id.encode()).hexdigest()}"]
        assert session_id not in keys[0]
        stored = await client.hgetall(keys[0])
        commit_id = stored.pop("_c")
        assert int(stored.pop("_e")) > time.time() * 1000
        assert stored == {"k:cart": '["apple"]', "_v": "1", "_f": "2", "_s": "17"} and len(commit_id) == 16
        assert 0 < await client.ttl(keys[0]) <= 14 * 24 * 3600
    finally:
        await client.aclose()
        await store.aclose()


async def test_tls_rediss_url(tmp_path: Path) -> None:
    from .conftest import REDIS_SERVERS, skip_or_fail

    tls_capable = [binary for name, binary in REDIS_SERVERS.items() if name >= "redis-7"]
    if not tls_capable or not shutil.which("openssl"):
        skip_or_fail("TLS test needs Debian's redis-server (built with TLS) and openssl")
    with RedisServer(tls_capable[0], tmp_path / "tls", tls=True) as server:
        assert server.url.startswith("rediss://")
        store = RedisStore(server.url, expiry_check_interval=0.1)
        try:
            await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
            async with store.subscribe("k") as updates:
                await next_update(updates)
                await store.commit("k", {"a": "2"}, (), ttl=60)
                assert (await next_update(updates)).session == {"a": 2}
        finally:
            await store.aclose()


async def test_late_or_duplicate_messages_never_roll_a_view_back(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    await redis_store.commit("k", {"n": "1"}, (), ttl=60, create=True)
    await redis_store.commit("k", {"n": "2"}, (), ttl=60)
    async with redis_store.subscribe("k") as updates:
        assert (await next_update(updates)).version == 2
        stale = '{"v": 2, "r": "updated", "c": ["n"], "x": {}, "d": {"n": "0"}}'
        await redis_client.publish("live-session:c:k", stale)
        await redis_client.publish("live-session:c:k", stale.replace('"v": 2', '"v": 1'))
        await redis_store.commit("k", {"n": "3"}, (), ttl=60)
        update = await next_update(updates)
        assert update.version == 3 and update.session == {"n": 3}


async def test_an_existing_client_can_be_given(redis_url: str) -> None:
    for decode in (False, True):
        client = aioredis.Redis.from_url(redis_url, decode_responses=decode)
        store = RedisStore(client=client)
        try:
            await store.commit(f"k{decode}", {"a": '"é"'}, (), ttl=60, create=True)
            record = await store.load(f"k{decode}")
            assert record is not None and dict(record.data) == {"a": '"é"'}
        finally:
            await store.aclose()
            await client.aclose()


async def test_down_redis_raises_store_unavailable_and_recovers(fresh_redis: RedisServer) -> None:
    store = RedisStore(fresh_redis.url, socket_timeout=1)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        fresh_redis.kill()
        with pytest.raises(StoreUnavailable):
            await store.load("k")
        with pytest.raises(StoreUnavailable):
            await store.commit("k", {"a": "2"}, (), ttl=60)
        fresh_redis.restart()
        # The pooled connections died with the server; the first request after must still work.
        record = await store.load("k")
        assert record is not None and dict(record.data) == {"a": "1"}  # persistence kept it
    finally:
        await store.aclose()


async def test_subscribers_resync_after_a_restart(fresh_redis: RedisServer) -> None:
    listener = RedisStore(fresh_redis.url, expiry_check_interval=0.1, socket_timeout=1)
    writer = RedisStore(fresh_redis.url, socket_timeout=1)  # another process, as far as Redis knows
    try:
        await writer.commit("k", {"n": "0"}, (), ttl=60, create=True)
        async with listener.subscribe("k") as updates:
            assert (await next_update(updates)).version == 1
            fresh_redis.kill()
            fresh_redis.restart()
            # Written while the listener is still reconnecting: the message is lost, the resync is not.
            await writer.commit("k", {"n": "1"}, (), ttl=60)
            started = time.monotonic()
            update = await next_update(updates, timeout=5)
            assert update.session == {"n": 1} and update.version == 2 and update.changed == {"n"}
            assert time.monotonic() - started < 2
            await writer.commit("k", {"n": "2"}, (), ttl=60)  # and it listens again
            assert (await next_update(updates)).session == {"n": 2}
    finally:
        await listener.aclose()
        await writer.aclose()


async def test_restart_without_persistence_ends_sessions_as_expired(fresh_redis: RedisServer) -> None:
    fresh_redis.persistence = False
    fresh_redis.restart()
    store = RedisStore(fresh_redis.url, expiry_check_interval=0.1, socket_timeout=1)
    try:
        await store.commit("k", {"n": "0"}, (), ttl=60, create=True)
        async with store.subscribe("k") as updates:
            await next_update(updates)
            fresh_redis.kill()
            fresh_redis.restart()
            update = await next_update(updates, timeout=5)
            assert update.reason == "expired" and update.removed == {"n"}
    finally:
        await store.aclose()


async def test_expiry_is_redis_ttl_and_subscribers_are_told(redis_url: str) -> None:
    store = RedisStore(redis_url, expiry_check_interval=0.05)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=0.2, create=True)
        async with store.subscribe("k") as updates:
            await next_update(updates)
            update = await next_update(updates, timeout=5)
            assert update.reason == "expired"
        assert await store.load("k") is None
    finally:
        await store.aclose()


async def test_pubsub_connection_killed_resubscribes(redis_url: str) -> None:
    listener = RedisStore(redis_url, expiry_check_interval=0.1)
    writer = RedisStore(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await writer.commit("k", {"n": "0"}, (), ttl=60, create=True)
        async with listener.subscribe("k") as updates:
            await next_update(updates)
            for n in range(1, 4):
                await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
                await writer.commit("k", {"n": str(n)}, (), ttl=60)
                update = await next_update(updates)
                while update.session["n"] != n:
                    update = await next_update(updates)
    finally:
        await admin.aclose()
        await listener.aclose()
        await writer.aclose()


def _modify_worker(url: str, cookie: str, process: int, tasks: int, updates: int) -> None:
    async def run() -> None:
        store = RedisStore(url)
        live = await open_live({"store": store}, cookie)

        async def task(n: int) -> None:
            def bump(data: dict[str, Any]) -> None:
                data["counter"] += 1
                data[f"p{process}t{n}"] = data.get(f"p{process}t{n}", 0) + 1

            for _ in range(updates):
                await live.modify(bump)

        await asyncio.gather(*(task(n) for n in range(tasks)))
        await store.aclose()

    asyncio.run(run())


async def test_modify_across_four_processes_loses_nothing(redis_url: str) -> None:
    """4 processes x 50 tasks, each task its own key plus one shared counter: every update is there."""
    processes, tasks, updates = 4, 50, 5
    store = RedisStore(redis_url)
    cookie = await seed_session(store, {"counter": 0}, secret_key=SECRET)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_modify_worker, args=(redis_url, cookie, process, tasks, updates))
        for process in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join, 60)
    assert [worker.exitcode for worker in workers] == [0] * processes
    record = await store.load(store_key(cookie.split(".")[0]))
    assert record is not None
    data = {name: json.loads(text) for name, text in record.data.items()}
    expected = {f"p{p}t{n}": updates for p in range(processes) for n in range(tasks)}
    assert data == {"counter": processes * tasks * updates, **expected}
    await store.aclose()


@pytest.fixture
def two_demo_servers(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with (
        live_app_server(tmp_path, LIVE_SESSION_REDIS=redis_url) as server_a,
        live_app_server(tmp_path, LIVE_SESSION_REDIS=redis_url) as server_b,
    ):
        yield server_a, server_b


def test_two_processes_share_sessions_and_broadcasts(two_demo_servers: tuple[str, str]) -> None:
    server_a, server_b = two_demo_servers

    async def run() -> None:
        async with httpx2.AsyncClient(base_url=f"http://{server_a}") as http_a:
            await http_a.get("/")
            cookie = http_a.cookies["session"]
            headers = {"Cookie": f"session={cookie}"}
            async with (
                httpx2.AsyncClient(base_url=f"http://{server_b}", cookies={"session": cookie}) as http_b,
                connect(f"ws://{server_a}/live", additional_headers=headers) as tab,
            ):
                assert await asyncio.wait_for(tab.recv(), 5)
                response = await http_b.post("/add", data={"item": "from-b"})
                assert response.status_code == 303
                message = json.loads(await asyncio.wait_for(tab.recv(), 5))
                assert message["session"] == {"cart": ["from-b"]}

    asyncio.run(run())


def test_each_request_on_a_new_event_loop(redis_url: str) -> None:
    """Starlette's TestClient without `with` runs each request in a new event loop."""
    from starlette.testclient import TestClient

    from .conftest import make_app

    store = RedisStore(redis_url)
    client = TestClient(make_app(store=store))
    for n in range(10):
        client.post("/update_session", json={f"k{n}": n})
    assert len(client.get("/view_session").json()["session"]) == 10
    assert len(store._states) <= 2  # clients of closed loops are dropped


def test_missing_redis_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import live_session._redis as module

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'live-session\[redis\]'"):
        importlib.reload(module)
    monkeypatch.undo()
    importlib.reload(module)


async def test_a_retried_commit_is_not_applied_twice(redis_url: str) -> None:
    from live_session import _redis_scripts as scripts

    store = RedisStore(redis_url)
    try:
        await store.commit("k", {"n": "0"}, (), ttl=60, create=True)
        keys = [store._hash("k"), store._channel("k")]
        now = int(time.time() * 1000)
        args = [60_000, 0, 1, 0, 65536, scripts.FORMAT, "same-commit-id", "", now, -1, 0, 1, "n", "1"]
        first = await store._run(scripts.COMMIT, keys, args, write=True)
        again = await store._run(scripts.COMMIT, keys, args, write=True)  # as after a lost reply
        assert first[1] == again[1] == 2  # applied once, and the retry reports success, not a conflict
    finally:
        await store.aclose()


async def test_the_expiry_check_reports_exactly_the_sessions_gone_slice_by_slice(
    redis_url: str, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check asks Redis about watched sessions in slices (of 2 here): each gone one, and only those, ends."""
    monkeypatch.setattr(redis_module, "_CHECK_SLICE", 2)
    store = RedisStore(redis_url, expiry_check_interval=0.05)
    keys = [f"k{i}" for i in range(5)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = {}
            for key in keys:
                await store.commit(key, {"a": "1"}, (), ttl=60, create=True)
                subscriptions[key] = await stack.enter_async_context(store.subscribe(key))
                await next_update(subscriptions[key])
            # Gone without a message, as when Redis expires a key: in the first, second and third slice.
            await redis_client.delete(store._hash("k1"), store._hash("k2"), store._hash("k4"))
            for key in ("k1", "k2", "k4"):
                assert (await next_update(subscriptions[key])).reason == "expired"
            for key in ("k0", "k3"):  # still there: their next update is a change, not an end
                changed = await store.commit(key, {"a": "2"}, (), ttl=60)
                assert changed is not None
                update = await next_update(subscriptions[key])
                assert update.reason == "updated" and update.version == changed.version
    finally:
        await store.aclose()


async def test_the_expiry_check_runs_while_requests_hold_every_connection(
    redis_url: str, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The check has a connection of its own: requests holding all the others neither delay nor break it."""
    caplog.set_level(logging.WARNING)
    store = RedisStore(redis_url, expiry_check_interval=0.05, socket_timeout=0.2)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        async with store.subscribe("k") as updates:
            await next_update(updates)
            state = await store._state()
            slots = state.connections._slots
            busy, slots.free = slots.free, 0  # as if every connection were serving a request
            try:
                await redis_client.delete(store._hash("k"))
                assert (await next_update(updates)).reason == "expired"
            finally:
                slots.free = busy
    finally:
        await store.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_destroy_is_reported_as_destroyed_not_expired(redis_url: str) -> None:
    store = RedisStore(redis_url, expiry_check_interval=0.001)
    try:
        for n in range(20):
            key = f"k{n}"
            await store.commit(key, {"a": "1"}, (), ttl=60, create=True)
            async with store.subscribe(key) as updates:
                await next_update(updates)
                await store.destroy(key)
                assert (await next_update(updates)).reason == "destroyed"
    finally:
        await store.aclose()


async def test_a_new_subscriber_never_makes_an_old_one_miss_an_update(redis_url: str) -> None:
    listener, writer = RedisStore(redis_url), RedisStore(redis_url)
    try:
        for n in range(20):
            key = f"k{n}"
            await writer.commit(key, {"n": "1"}, (), ttl=60, create=True)
            async with listener.subscribe(key) as first:
                await next_update(first)
                await writer.commit(key, {"n": "2"}, (), ttl=60)
                async with listener.subscribe(key) as second:
                    assert (await next_update(second)).version == 2
                    assert (await next_update(first)).version == 2
    finally:
        await listener.aclose()
        await writer.aclose()


async def test_a_read_only_replica_is_store_unavailable(fresh_redis: RedisServer) -> None:
    store = RedisStore(fresh_redis.url)
    admin = aioredis.Redis.from_url(fresh_redis.url)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        await admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # type: ignore[no-untyped-call]
        with pytest.raises(StoreUnavailable, match="read only"):
            await store.commit("k", {"a": "2"}, (), ttl=60)
    finally:
        await admin.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
        await admin.aclose()
        await store.aclose()


def test_a_given_client_serves_every_event_loop(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(client=client)

    async def once(n: int) -> None:
        await store.commit(f"k{n}", {"a": "1"}, (), ttl=60, create=True)
        assert await store.load(f"k{n}") is not None

    for n in range(3):
        asyncio.run(once(n))


@pytest.fixture
def sentinel_port(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A Redis Sentinel (the same binary, in sentinel mode) watching ``redis_server`` as ``primary``."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor primary 127.0.0.1 {redis_server.port} 1\n"
        "sentinel down-after-milliseconds primary 60000\n"
    )
    process = subprocess.Popen([redis_server.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"SENTINEL get-master-addr-by-name primary\r\n")
                    if str(redis_server.port).encode() in sock.recv(256):
                        break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the sentinel did not start"
            time.sleep(0.02)  # waiting for the process to listen, within the deadline
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def test_a_given_sentinel_client_serves_as_a_template(redis_url: str, sentinel_port: int) -> None:
    """A client from Sentinel.master_for(): the store finds the primary through the sentinel, as the client does."""
    sentinel = Sentinel([("127.0.0.1", sentinel_port)])  # type: ignore[no-untyped-call]
    store = RedisStore(client=sentinel.master_for("primary"))
    plain = aioredis.Redis.from_url(redis_url)
    try:
        created = await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        assert created is not None
        assert await plain.exists(store._hash("k"))  # on the primary the sentinel names
        async with store.subscribe("k") as updates:
            assert (await next_update(updates)).session == {"a": 1}
            await store.commit("k", {"a": "2"}, (), ttl=60)
            assert (await next_update(updates)).session == {"a": 2}
    finally:
        await plain.aclose()
        await store.aclose()
        for client in sentinel.sentinels:
            await client.aclose()


def test_a_sentinel_client_for_a_replica_is_refused(sentinel_port: int) -> None:
    sentinel = Sentinel([("127.0.0.1", sentinel_port)])  # type: ignore[no-untyped-call]
    with pytest.raises(ValueError, match="needs the primary"):
        RedisStore(client=sentinel.slave_for("primary"))


def test_a_given_sentinel_client_serves_every_event_loop(redis_url: str, sentinel_port: int) -> None:
    """Each event loop asks the sentinels on connections of its own (theirs are tied to a loop too)."""
    sentinel = Sentinel([("127.0.0.1", sentinel_port)])  # type: ignore[no-untyped-call]
    store = RedisStore(client=sentinel.master_for("primary"))

    async def once(n: int) -> None:
        try:
            await store.commit(f"k{n}", {"a": "1"}, (), ttl=60, create=True)
            assert await store.load(f"k{n}") is not None
        finally:
            await store.aclose()

    for n in range(3):
        asyncio.run(once(n))


async def test_idle_connections_to_a_former_primary_are_not_reused(redis_url: str, sentinel_port: int) -> None:
    """Once the pool knows the primary moved, a connection to the old one is closed rather than reused."""
    sentinel = Sentinel([("127.0.0.1", sentinel_port)])  # type: ignore[no-untyped-call]
    store = RedisStore(client=sentinel.master_for("primary"))
    try:
        first = await store._call(await store._state(), False, "CLIENT", "ID")
        assert await store._call(await store._state(), False, "CLIENT", "ID") == first  # idle, reused
        pool = (await store._state()).client.connection_pool
        pool.master_address = ("127.0.0.1", free_port())  # type: ignore[attr-defined]  # as after a failover
        # The idle connection is to another address now: a new one is made, and finds the primary again.
        assert await store._call(await store._state(), False, "CLIENT", "ID") != first
    finally:
        await store.aclose()


async def test_channels_of_ended_sessions_are_unsubscribed(redis_url: str) -> None:
    store = RedisStore(redis_url, expiry_check_interval=0.01)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        async with store.subscribe("k") as updates:
            await next_update(updates)
            await store.destroy("k")
            await next_update(updates)
        channel = store._channel("k")
        deadline = time.monotonic() + 5
        while (await admin.pubsub_numsub(channel))[0][1] != 0:
            assert time.monotonic() < deadline, "channel still subscribed"
            await asyncio.sleep(0.01)  # polling Redis for the unsubscribe to land, within the deadline
    finally:
        await admin.aclose()
        await store.aclose()


async def test_scripts_are_sent_again_after_redis_forgets_them(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    """Scripts run by hash (EVALSHA); after SCRIPT FLUSH (or a restart) the text is sent once more."""
    await redis_store.commit("k", {"a": "1"}, (), ttl=60, create=True)
    await redis_client.script_flush()
    record = await redis_store.load("k")
    assert record is not None and dict(record.data) == {"a": "1"}
    assert await redis_store.commit("k", {"a": "2"}, (), ttl=60) is not None


async def test_a_burst_beyond_the_pool_size_waits_instead_of_failing(redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
        records = await asyncio.gather(*(store.load("k", ttl=60) for _ in range(300)))
        assert all(record is not None for record in records)
    finally:
        await store.aclose()


async def test_a_format_1_record_is_read_and_written(redis_url: str) -> None:
    """Records written before `_s` and `_e` existed: sizes are counted afresh, lifetimes extended."""
    store = RedisStore(redis_url, max_session_size=40)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        name = store._hash("old")
        await client.hset(name, mapping={"k:a": '"xxxxxxxxxx"', "_v": "3", "_f": "1", "_c": "c"})
        await client.pexpire(name, 5_000)
        record = await store.load("old", ttl=600)
        assert record is not None and record.version == 3 and dict(record.data) == {"a": '"xxxxxxxxxx"'}
        assert await client.pttl(name) > 500_000  # no `_e`: extended
        # 1 + (1 + 12 + 4) = 18 bytes stored; 18 + (1 + 20 + 4) = 43 > 40 only if the old key is counted.
        with pytest.raises(SessionTooLarge):
            await store.commit("old", {"b": '"' + "y" * 18 + '"'}, (), ttl=600)
        committed = await store.commit("old", {"b": "1"}, (), ttl=600, base=record)
        assert committed == Record({"a": '"xxxxxxxxxx"', "b": "1"}, 4)
        assert await client.hget(name, "_s") == str(17 + 6)
    finally:
        await client.aclose()
        await store.aclose()


async def test_reads_extend_the_lifetime_only_once_it_has_run_down(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    await redis_store.commit("k", {"a": "1"}, (), ttl=100, create=True)
    name = redis_store._hash("k")
    await redis_client.pexpire(name, 99_000)  # 1 s used of 100: within the slack (5 s)
    assert await redis_store.load("k", ttl=100) is not None
    assert await redis_client.pttl(name) <= 99_000
    await redis_client.hset(name, "_e", int(time.time() * 1000) + 50_000)  # half of it used
    await redis_client.pexpire(name, 50_000)
    assert await redis_store.load("k", ttl=100) is not None
    assert await redis_client.pttl(name) > 98_000
    assert await redis_store.load("k") is not None and await redis_client.pttl(name) > 98_000


async def test_commits_extend_the_lifetime_only_once_it_has_run_down(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    record = await redis_store.commit("k", {"a": "1"}, (), ttl=100, create=True)
    name = redis_store._hash("k")
    await redis_client.pexpire(name, 99_000)  # 1 s used of 100: within the slack (5 s)
    record = await redis_store.commit("k", {"a": "2"}, (), ttl=100, base=record)
    assert await redis_client.pttl(name) <= 99_000
    await redis_client.hset(name, "_e", int(time.time() * 1000) + 50_000)  # half of it used
    await redis_client.pexpire(name, 50_000)
    record = await redis_store.commit("k", {"a": "3"}, (), ttl=100, base=record)
    assert await redis_client.pttl(name) > 98_000
    await redis_client.hset(name, "_e", int(time.time() * 1000) + 50_000)
    await redis_client.pexpire(name, 50_000)
    assert await redis_store.commit("k", {"a": "3"}, (), ttl=100, base=record) == record  # no change: extended only
    assert await redis_client.pttl(name) > 98_000


async def test_a_gap_in_the_versions_makes_subscribers_re_read(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    """Messages carry only what changed; one that does not follow the last is not applied, the session is re-read."""
    await redis_store.commit("k", {"a": "1", "b": "1"}, (), ttl=60, create=True)
    async with redis_store.subscribe("k") as updates:
        assert (await next_update(updates)).session == {"a": 1, "b": 1}
        # A change that reaches Redis without its message (as if the message were lost).
        await redis_client.hset(redis_store._hash("k"), mapping={"k:b": "2", "_v": "2"})
        message = {"v": 3, "r": "updated", "c": ["a"], "x": [], "d": {"a": "3"}}
        await redis_client.hset(redis_store._hash("k"), mapping={"k:a": "3", "_v": "3"})
        await redis_client.publish(redis_store._channel("k"), json.dumps(message))
        update = await next_update(updates)
        assert update.version == 3 and update.session == {"a": 3, "b": 2}
        assert update.changed == {"a", "b"}


async def test_a_size_an_older_writer_left_stale_is_counted_afresh(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    """During a rolling upgrade a format-1 writer changes a record without keeping `_s`: never trusted then."""
    record = await redis_store.commit("k", {"a": "1"}, (), ttl=60, create=True)
    await redis_client.hset(redis_store._hash("k"), mapping={"k:b": "2", "_v": "2", "_f": "1"})  # as the old script did
    after = await redis_store.commit("k", {}, ["a"], ttl=60, drop_if_empty=True, base=record)
    assert after is not None and dict(after.data) == {"b": "2"} and after.version == 3
    assert (
        await redis_client.hget(redis_store._hash("k"), "_s") == b"6"
        and await redis_client.hget(redis_store._hash("k"), "_f") == b"2"
    )


async def test_lifetimes_follow_the_server_clock_whatever_the_estimate(redis_url: str) -> None:
    """A client whose estimate of the server's clock is far off never deletes a session nor leaves one forever."""
    for error_ms in (-600_000, 600_000):
        store = RedisStore(redis_url)
        client = aioredis.Redis.from_url(redis_url)
        try:
            state = await store._state()
            await store._server_now(state)
            state.clock_offset += error_ms
            record = await store.commit("k", {"a": "1"}, (), ttl=60, create=True)
            name = store._hash("k")
            assert 0 < await client.pttl(name) <= 60_000
            assert await store.load("k", ttl=60) is not None
            assert await store.commit("k", {"a": "2"}, (), ttl=60, base=record) is not None
            assert await store.commit("k", {"a": "2"}, (), ttl=60) is not None  # no change: lifetime only
            assert 0 < await client.pttl(name) <= 60_000
            assert await store.load("k", ttl=60) is not None
        finally:
            await client.delete(store._hash("k"))
            await client.aclose()
            await store.aclose()


async def test_a_shorter_idle_timeout_shortens_existing_sessions(
    redis_store: RedisStore, redis_client: aioredis.Redis
) -> None:
    await redis_store.commit("k", {"a": "1"}, (), ttl=3600, create=True)
    assert await redis_store.load("k", ttl=10) is not None
    assert 0 < await redis_client.pttl(redis_store._hash("k")) <= 10_000


async def test_a_change_landing_while_a_subscriber_reads_its_snapshot_reaches_it(redis_url: str) -> None:
    """The message of a commit made after watch()'s read, handled before that read returns, is not lost."""
    store = RedisStore(redis_url)
    writer = RedisStore(redis_url)
    try:
        await writer.commit("k", {"a": "1"}, (), ttl=60, create=True)
        await writer.commit("other", {"a": "1"}, (), ttl=60, create=True)
        state = await store._state()
        async with store.subscribe("other") as others:  # the listener is up: only watch() reads below
            await next_update(others)
        load = store.load
        first = True

        async def load_then_change(key: str, *, ttl: float | None = None) -> Record | None:
            nonlocal first
            record = await load(key, ttl=ttl)
            if first:
                first = False
                await writer.commit("k", {"a": "2"}, (), ttl=60)
                # Hold the read's result back until the listener has handled the message: it has
                # queued a re-read, or made it already.
                deadline = asyncio.get_running_loop().time() + 5
                while "k" not in state.stale and state.watched["k"].version < 2:
                    assert asyncio.get_running_loop().time() < deadline, "the message was dropped"
                    await asyncio.sleep(0.001)
            return record

        store.load = load_then_change  # type: ignore[method-assign]
        async with store.subscribe("k") as updates:
            snapshot = await next_update(updates)
            assert snapshot.session == {"a": 1}
            update = await next_update(updates)
            assert update.version == 2 and update.session == {"a": 2}
    finally:
        await writer.aclose()
        await store.aclose()
