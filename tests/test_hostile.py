"""Property tests: hostile cookies never crash or get adopted; JSON values round-trip exactly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from live_session import LiveSessionMiddleware, MemoryStore
from live_session._values import check_value, decode, encode

from .conftest import SECRET, make_app

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


def call(app: Any, headers: list[tuple[bytes, bytes]], path: str = "/view_session") -> tuple[int, list[Any]]:
    """One raw ASGI request, so any bytes can go in the Cookie header."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], start["headers"]


STORE = MemoryStore()
APP = make_app(store=STORE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_cookie_bytes_never_crash_and_create_nothing(raw: bytes) -> None:
    status, headers = call(APP, [(b"cookie", b"session=" + raw)])
    assert status == 200
    assert not any(name == b"set-cookie" for name, _ in headers)
    assert len(STORE) == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_cookie_text_never_crashes(text: str) -> None:
    status, _ = call(APP, [(b"cookie", ("session=" + text).encode("utf-8", "surrogatepass"))])
    assert status == 200
    assert len(STORE) == 0


def test_every_single_byte_change_of_a_valid_cookie_is_refused() -> None:
    store = MemoryStore()
    app = make_app(store=store)
    signer = LiveSessionMiddleware(app, secret_key=SECRET).signer
    from live_session.testing import seed_session

    cookie = asyncio.run(seed_session(store, {"user": "ada"}, secret_key=SECRET))
    status, _ = call(app, [(b"cookie", b"session=" + cookie.encode())])
    assert status == 200
    raw = cookie.encode()
    for index in range(len(raw)):
        for replacement in {raw[index] ^ 1, ord("A"), ord("."), ord("-")} - {raw[index]}:
            mutated = raw[:index] + bytes([replacement]) + raw[index + 1 :]
            assert signer.unsign(mutated.decode("latin-1")) is None, (index, mutated)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=8))
def test_json_values_round_trip_through_http_and_the_store(data: dict[str, Any]) -> None:
    for key, value in data.items():
        check_value(key, value)
        assert decode(encode(value)) == value
    store = MemoryStore()

    async def run() -> dict[str, Any]:
        import httpx2

        app = make_app(store=store)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client:
            await client.post("/update_session", json=data)
            result: dict[str, Any] = (await client.get("/view_session")).json()["session"]
            return result

    assert asyncio.run(run()) == data
    assert len(store) == (1 if data else 0)


def test_the_verified_cookie_cache_is_bounded_and_holds_only_intact_cookies() -> None:
    from live_session._ids import CookieSigner, new_session_id

    signer = CookieSigner([SECRET])
    signer.cache_size = 50
    cookies = [signer.sign(new_session_id(), 0) for _ in range(200)]
    for cookie in cookies:
        assert signer.unsign(cookie) is not None
        assert signer.unsign(cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) is None
    assert len(signer._verified) <= 50
    assert all(signer.unsign(cookie) is not None for cookie in cookies)  # evicted ones verify again


def _outcome(function: Any, argument: Any) -> tuple[Any, Any]:
    try:
        return ("ok", function(argument))
    except Exception as error:  # the same error, with the same message
        return (type(error), str(error))


_reference_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_reference_decode = json.JSONDecoder().decode
any_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(any_values)
def test_encode_is_exactly_the_strict_compact_json_encoder(value: Any) -> None:
    # The fast paths (scalars, the C encoder called directly) give the same text or the same error.
    outcome = _outcome(encode, value)
    assert outcome == _outcome(_reference_encode, value)
    if outcome[0] == "ok":
        assert repr(decode(outcome[1])) == repr(_reference_decode(outcome[1]))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30) | st.sampled_from([" 1", "1 ", "[1] x", "", "NaN", '"a', '{"a":1} ', "-0", "tru", "{}{}"]))
def test_decode_accepts_and_refuses_exactly_what_json_does(text: str) -> None:
    assert repr(_outcome(decode, text)) == repr(_outcome(_reference_decode, text))


def test_encode_refuses_cycles_huge_ints_and_subclasses_as_json_does() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)

    class Text(str):
        pass

    for value in (cycle, {"a": cycle}, 10**5000, Text("x"), True, 1.5, float("inf"), (1, 2)):
        assert _outcome(encode, value) == _outcome(_reference_encode, value)
