"""Every store against a plain dict model, driven by hypothesis through random sequences of operations.

Rules: create, set, delete, clear (an emptied session is dropped, as a request's would be),
compare-and-set writes (what ``modify`` and live views do), regenerate, destroy and expire. A
subscriber follows every live session; after each step it must have received, in version order,
exactly the state the model holds, and a terminal update when the session ended.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from live_session import MemoryStore, SessionConflict, SessionUpdate, Store, Subscription
from live_session._values import encoded_size

from .conftest import REDIS_NAMES, RedisServers

names = st.sampled_from(["user", "cart", "theme", "n"])
values = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.lists(st.integers(0, 3), max_size=3), st.none())

TTL = 60.0


class Followed:
    """A live session in the model, and the subscriber that follows it."""

    def __init__(self, data: dict[str, Any], version: int, subscription: Subscription, close: Any) -> None:
        self.data = data
        self.version = version
        self.subscription = subscription
        self.close = close
        self.seen = -1


class StoreMachine(RuleBasedStateMachine):
    make_store: Any = None  # set per store below

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: Store = self.run(self.make_store())
        self.model: dict[str, Followed] = {}

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(work, 10))

    def teardown(self) -> None:
        for followed in self.model.values():
            self.run(followed.close(None, None, None))
        self.run(self.store.aclose())
        self.loop.close()

    # -- helpers --

    async def follow(self, key: str, data: dict[str, Any], version: int) -> Followed:
        context = self.store.subscribe(key)
        subscription = await context.__aenter__()
        followed = Followed(data, version, subscription, context.__aexit__)
        snapshot = await anext(subscription)
        assert snapshot.reason == "snapshot" and snapshot.version == version and snapshot.session == data
        followed.seen = snapshot.version
        return followed

    async def expect(self, followed: Followed, reason: str | None = None) -> SessionUpdate | None:
        """Read updates until the subscriber has caught up with the model (or seen the end)."""
        last = None
        while followed.seen < followed.version or reason is not None:
            update: SessionUpdate = await asyncio.wait_for(anext(followed.subscription), 5)
            assert update.version > followed.seen, "a subscriber went back in time"
            followed.seen = update.version
            last = update
            if update.terminal:
                assert reason is not None and update.reason == reason, update
                return update
        if last is not None:
            assert last.session == followed.data, (last.session, followed.data)
        return last

    def encode(self, data: dict[str, Any]) -> dict[str, str]:
        return {name: json.dumps(value) for name, value in data.items()}

    def write(self, key: str, changes: dict[str, Any], removed: list[str], expected: int | None = None) -> None:
        followed = self.model[key]
        encoded = {name: json.dumps(value) for name, value in changes.items()}
        record = self.run(
            self.store.commit(key, encoded, removed, ttl=TTL, expected_version=expected, drop_if_empty=True)
        )
        new = {**followed.data, **changes}
        for name in removed:
            if name not in changes:
                new.pop(name, None)
        if not new and followed.data:  # emptied: dropped, as after request.session.clear()
            assert record is not None and not record.data
            followed.version += 1
            self.run(self.expect(followed, "destroyed"))
            self.forget(key)
            return
        if new != followed.data:
            followed.version += 1
        followed.data = new
        assert record is not None and record.version == followed.version
        assert {name: json.loads(text) for name, text in record.data.items()} == new
        self.run(self.expect(followed))

    def forget(self, key: str) -> None:
        followed = self.model.pop(key)
        self.run(followed.close(None, None, None))
        assert self.run(self.store.load(key)) is None

    # -- rules --

    @rule(target=sessions, data=st.dictionaries(names, values, min_size=1, max_size=3))
    def create(self, data: dict[str, Any]) -> str:
        key = secrets.token_hex(8)
        record = self.run(self.store.commit(key, self.encode(data), (), ttl=TTL, create=True))
        assert record is not None and record.version == 1
        self.model[key] = self.run(self.follow(key, data, 1))
        return key

    @rule(key=sessions, name=names, value=values)
    def set(self, key: str, name: str, value: Any) -> None:
        if key in self.model:
            self.write(key, {name: value}, [])
        else:  # ended: a commit never brings it back
            assert self.run(self.store.commit(key, {name: json.dumps(value)}, (), ttl=TTL)) is None

    @rule(key=sessions, name=names)
    def delete(self, key: str, name: str) -> None:
        if key in self.model:
            self.write(key, {}, [name])

    @rule(key=sessions)
    def clear(self, key: str) -> None:
        if key in self.model:
            self.write(key, {}, list(self.model[key].data))

    @rule(key=sessions, name=names, value=values, stale=st.booleans())
    def compare_and_set(self, key: str, name: str, value: Any, stale: bool) -> None:
        if key not in self.model:
            return
        followed = self.model[key]
        if stale:  # a writer that read an older version must be refused, and nothing stored
            with pytest.raises(SessionConflict):
                self.run(
                    self.store.commit(
                        key, {name: json.dumps(value)}, (), ttl=TTL, expected_version=followed.version - 1
                    )
                )
            record = self.run(self.store.load(key))
            assert record is not None and record.version == followed.version
        else:
            self.write(key, {name: value}, [], expected=followed.version)

    @rule(target=sessions, key=consumes(sessions))
    def regenerate(self, key: str) -> str:
        new_key = secrets.token_hex(8)
        record = self.run(self.store.regenerate(key, new_key, ttl=TTL))
        if key not in self.model:
            assert record is None
            return new_key
        followed = self.model[key]
        followed.version += 1
        assert record is not None and record.version == followed.version
        self.run(self.expect(followed, "regenerated"))
        data, version = followed.data, followed.version
        self.forget(key)
        self.model[new_key] = self.run(self.follow(new_key, data, version))
        return new_key

    @rule(key=consumes(sessions))
    def destroy(self, key: str) -> None:
        existed = self.run(self.store.destroy(key))
        assert existed == (key in self.model)
        if existed:
            self.model[key].version += 1
            self.run(self.expect(self.model[key], "destroyed"))
            self.forget(key)

    @rule(key=consumes(sessions))
    def expire(self, key: str) -> None:
        if key not in self.model:
            return
        self.run(self.expire_now(key))
        self.model[key].version += 1
        self.run(self.expect(self.model[key], "expired"))
        self.forget(key)

    async def expire_now(self, key: str) -> None:
        raise NotImplementedError

    @invariant()
    def store_matches_the_model(self) -> None:
        for key, followed in self.model.items():
            record = self.run(self.store.load(key))
            assert record is not None and record.version == followed.version
            assert {name: json.loads(text) for name, text in record.data.items()} == followed.data


class MemoryMachine(StoreMachine):
    @staticmethod
    async def make_store() -> Store:
        store = MemoryStore(clean_interval=0.01)
        store._clock = lambda: MemoryMachine.now
        return store

    now = 0.0

    async def expire_now(self, key: str) -> None:
        # Only this session: its lifetime ends now; the next look at it finds that out.
        store = self.store
        assert isinstance(store, MemoryStore)
        with store._lock:
            store._entries[key].expires_at = MemoryMachine.now
        assert await store.load(key) is None

    @invariant()
    def sizes_kept_up_to_date_match_a_full_count(self) -> None:
        store = self.store
        assert isinstance(store, MemoryStore)
        for entry in store._entries.values():
            assert (entry.parts + 1 if entry.data else 2) == encoded_size(entry.data)


TestMemoryStore = MemoryMachine.TestCase
TestMemoryStore.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@pytest.fixture(params=REDIS_NAMES)
def redis_machine(request: pytest.FixtureRequest, redis_servers: RedisServers) -> type[StoreMachine]:
    server = redis_servers.get(request.param)
    server.flushall()

    class RedisMachine(StoreMachine):
        @staticmethod
        async def make_store() -> Store:
            from live_session import RedisStore

            return RedisStore(server.url, expiry_check_interval=0.02)

        async def expire_now(self, key: str) -> None:
            import redis.asyncio as aioredis

            from live_session import RedisStore

            store = self.store
            assert isinstance(store, RedisStore)
            client = aioredis.Redis.from_url(server.url)
            try:
                await client.pexpire(store._hash(key), 1)
            finally:
                await client.aclose()

    return RedisMachine


def test_redis_store_matches_the_model(redis_machine: type[StoreMachine]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(redis_machine, settings=settings(max_examples=15, stateful_step_count=20, deadline=None))
