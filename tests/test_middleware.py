"""The middleware as a drop-in for Starlette's SessionMiddleware, and what it adds."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from live_session import LiveSessionMiddleware, MemoryStore, RedisStore, Session, SessionTooLarge, ensure_session
from live_session._ids import store_key
from live_session.testing import seed_session

from .conftest import BASIC_ROUTES, REDIS_NAMES, SECRET, make_app


def cookie_value(set_cookie: str) -> str:
    match = re.match(r"session=([^;]*);", set_cookie)
    assert match is not None, set_cookie
    return match[1]


# -- Starlette's documented behaviour, as our own tests --


def test_defaults_and_cookie_attributes() -> None:
    client = TestClient(make_app())
    assert client.get("/view_session").json() == {"session": {}}
    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    header = response.headers["set-cookie"]
    assert re.fullmatch(r"session=[^;]+; path=/; Max-Age=1209600; httponly; samesite=lax", header), header
    assert client.get("/view_session").json() == {"session": {"some": "data"}}
    response = client.post("/clear_session")
    assert response.headers["set-cookie"] == (
        "session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax"
    )
    assert client.get("/view_session").json() == {"session": {}}


def test_header_text_matches_starlette() -> None:
    """Every attribute, in the order and case Starlette writes, for the same options."""
    options: dict[str, Any] = {
        "session_cookie": "sid",
        "max_age": 3600,
        "path": "/app",
        "same_site": "strict",
        "https_only": True,
        "domain": "example.com",
        "partitioned": True,
    }

    def headers(middleware: Any) -> tuple[str, str]:
        app = Starlette(
            routes=[Mount("/app", routes=BASIC_ROUTES)],
            middleware=[Middleware(middleware, secret_key=SECRET, **options)],
        )
        client = TestClient(app, base_url="https://example.com")
        set_header = client.post("/app/update_session", json={"a": 1}).headers["set-cookie"]
        cleared = client.post("/app/clear_session").headers["set-cookie"]
        return set_header, cleared

    ours, theirs = headers(LiveSessionMiddleware), headers(StarletteSessionMiddleware)
    strip = re.compile(r"^sid=[^;]*")
    assert strip.sub("sid=", ours[0]) == strip.sub("sid=", theirs[0])
    assert ours[1] == theirs[1]


def test_https_only_cookie_is_secure_and_not_sent_over_http() -> None:
    app = make_app(https_only=True)
    secure, plain = (
        TestClient(app, base_url="https://testserver"),
        TestClient(app, base_url="http://testserver"),
    )
    response = plain.post("/update_session", json={"some": "data"})
    assert "; secure" in response.headers["set-cookie"]
    assert plain.get("/view_session").json() == {"session": {}}
    secure.post("/update_session", json={"some": "data"})
    assert secure.get("/view_session").json() == {"session": {"some": "data"}}


def test_path_and_domain() -> None:
    inner = make_app(path="/second_app", domain=".example.com")
    client = TestClient(Starlette(routes=[Mount("/second_app", app=inner)]), base_url="http://testserver/second_app")
    header = client.post("/update_session", json={"some": "data"}).headers["set-cookie"]
    assert "; path=/second_app; " in header
    assert "; domain=.example.com" in header


def test_max_age_none_is_a_browser_session_but_the_server_still_expires_it() -> None:
    store = MemoryStore()
    app = make_app(max_age=None, idle_timeout=30, store=store)
    client = TestClient(app)
    header = client.post("/update_session", json={"some": "data"}).headers["set-cookie"]
    assert "Max-Age" not in header
    assert client.get("/view_session").json() == {"session": {"some": "data"}}
    store._clock = lambda: 10**9  # far past the 30 s idle timeout
    assert client.get("/view_session").json() == {"session": {}}


@pytest.mark.parametrize("max_age", [0, -1])
def test_zero_or_negative_max_age_behaves_as_in_starlette(max_age: int) -> None:
    app = make_app(max_age=max_age)
    client = TestClient(app)
    response = client.post("/update_session", json={"some": "data"})
    assert f"; Max-Age={max_age}; " in response.headers["set-cookie"]
    # Replay the cookie the browser would have dropped: the session is already gone.
    replay = TestClient(app, cookies={"session": cookie_value(response.headers["set-cookie"])})
    assert replay.get("/view_session").json() == {"session": {}}


@pytest.mark.parametrize(
    "value", ["invalid", "", "a.b.c", "null", "x" * 5000, "%00", '"quoted"', "a" * 43 + ".0." + "b" * 43]
)
def test_invalid_cookie_is_an_empty_session(value: str) -> None:
    client = TestClient(make_app(), cookies={"session": value})
    response = client.get("/view_session")
    assert response.status_code == 200
    assert response.json() == {"session": {}}
    assert "set-cookie" not in response.headers


def test_set_cookie_only_on_change_and_vary_only_on_access() -> None:
    client = TestClient(make_app())
    response = client.post("/update_session", json={"some": "data"})
    assert "set-cookie" in response.headers
    assert "cookie" in response.headers["vary"].lower()
    response = client.get("/view_session")
    assert "set-cookie" not in response.headers
    assert "cookie" in response.headers["vary"].lower()
    response = client.get("/no_session")
    assert "set-cookie" not in response.headers
    assert "vary" not in response.headers


def test_session_tracks_modification_like_starlette() -> None:
    session = Session({"a": "1"})
    assert not session.modified and not session.accessed
    session.pop("missing", None)
    assert not session.modified and not session.accessed
    session.setdefault("a", "2")
    assert not session.modified
    session.setdefault("b", "2")
    assert session.modified and session["b"] == "2"
    for change in (
        lambda s: s.pop("a"),
        lambda s: s.popitem(),
        lambda s: s.clear(),
        lambda s: s.__delitem__("a"),
    ):
        session = Session({"a": "1"})
        change(session)
        assert session.modified and session.accessed
    session = Session()
    session |= {"x": 1}
    assert session.modified and session == {"x": 1}


# -- server-side data, strict ids --


def test_cookie_holds_only_a_signed_id() -> None:
    store = MemoryStore()
    client = TestClient(make_app(store=store))
    value = cookie_value(client.post("/update_session", json={"secret": "do not leak"}).headers["set-cookie"])
    session_id, _issued, _signature = value.split(".")
    assert len(base64.urlsafe_b64decode(session_id + "=")) == 32  # 256 bits
    assert "leak" not in value
    assert store_key(session_id) in store._entries
    assert session_id not in store._entries  # stored under a hash of the id


def test_unknown_but_validly_signed_id_is_never_adopted() -> None:
    store = MemoryStore()
    app = make_app(store=store)
    forged = LiveSessionMiddleware(app, secret_key=SECRET).signer.sign("A" * 43, 0)
    client = TestClient(app, cookies={"session": forged})
    response = client.post("/update_session", json={"a": 1})
    new_id = cookie_value(response.headers["set-cookie"]).split(".")[0]
    assert new_id != "A" * 43
    assert store_key("A" * 43) not in store._entries
    assert list(store._entries) == [store_key(new_id)]


def test_tampered_cookie_is_rejected_without_a_store_lookup() -> None:
    store = MemoryStore()
    client = TestClient(make_app(store=store))
    value = cookie_value(client.post("/update_session", json={"a": 1}).headers["set-cookie"])
    loads: list[str] = []
    original = store.load

    async def counting_load(key: str, *, ttl: float | None = None) -> Any:
        loads.append(key)
        return await original(key, ttl=ttl)

    store.load = counting_load  # type: ignore[method-assign]
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    app = client.app
    assert TestClient(app, cookies={"session": tampered}).get("/view_session").json() == {"session": {}}
    assert loads == []
    assert TestClient(app, cookies={"session": value}).get("/view_session").json() == {"session": {"a": 1}}
    assert len(loads) == 1


def test_key_rotation_and_starlette_secret() -> None:
    store = MemoryStore()
    old = TestClient(make_app(store=store, secret_key=Secret("old")))
    value = cookie_value(old.post("/update_session", json={"a": 1}).headers["set-cookie"])
    rotated = TestClient(make_app(store=store, secret_key=["new", Secret("old")]), cookies={"session": value})
    response = rotated.get("/view_session")
    assert response.json() == {"session": {"a": 1}}
    new_cookie = cookie_value(response.headers["set-cookie"])  # re-signed with the new key at once
    assert new_cookie != value
    rotated.post("/update_session", json={"b": 2})
    only_new = TestClient(make_app(store=store, secret_key="new"), cookies={"session": new_cookie})
    assert only_new.get("/view_session").json() == {"session": {"a": 1, "b": 2}}
    dropped = TestClient(make_app(store=store, secret_key="new"), cookies={"session": value})
    assert dropped.get("/view_session").json() == {"session": {}}


@pytest.mark.parametrize("bad", [b"bytes", 42, ["ok", 3], [], "", [""]])
def test_bad_secret_key_is_a_clear_error(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="secret_key"):
        LiveSessionMiddleware(make_app(), secret_key=bad)


def test_nested_changes_are_saved() -> None:
    async def add(request: Request) -> JSONResponse:
        request.session.setdefault("cart", []).append(request.query_params["item"])
        request.session.setdefault("prefs", {"sizes": {}})["sizes"][request.query_params["item"]] = 1
        return JSONResponse(request.session)

    client = TestClient(make_app([*BASIC_ROUTES, Route("/add", add)]))
    client.get("/add?item=a")
    client.get("/add?item=b")
    session = client.get("/view_session").json()["session"]
    assert session == {"cart": ["a", "b"], "prefs": {"sizes": {"a": 1, "b": 1}}}


MUTATIONS_THROUGH_READS: dict[str, Callable[[Any], Any]] = {
    "getitem": lambda s: s["cart"].append("x"),
    "get": lambda s: s.get("cart").append("x"),
    "setdefault": lambda s: s.setdefault("cart", []).append("x"),
    "items": lambda s: next(v for k, v in s.items() if k == "cart").append("x"),
    "values": lambda s: next(v for v in s.values() if isinstance(v, list)).append("x"),
    "copy": lambda s: s.copy()["cart"].append("x"),
    "dict": lambda s: dict(s)["cart"].append("x"),
    "unpack": lambda s: {**s}["cart"].append("x"),
    "or": lambda s: (s | {})["cart"].append("x"),
    "nested dict": lambda s: s["prefs"]["sizes"].update(x=1),
}


@pytest.mark.parametrize("how", MUTATIONS_THROUGH_READS)
def test_in_place_changes_are_found_however_the_value_was_read(how: str) -> None:
    async def mutate(request: Request) -> JSONResponse:
        MUTATIONS_THROUGH_READS[how](request.session)
        return JSONResponse({})

    client = TestClient(make_app([*BASIC_ROUTES, Route("/mutate", mutate)]))
    client.post("/update_session", json={"cart": ["a"], "prefs": {"sizes": {}}, "user": 1})
    client.get("/mutate")
    session = client.get("/view_session").json()["session"]
    assert session["cart"] == ["a", "x"] or session["prefs"] == {"sizes": {"x": 1}}, session


def _pop_every_item(session: Any) -> None:
    while session:
        _, value = session.popitem()
        if isinstance(value, list):
            value.append("x")


MUTATIONS_NEVER_STORED: dict[str, Callable[[Any], Any]] = {
    **MUTATIONS_THROUGH_READS,
    "pop": lambda s: s.pop("cart").append("x"),
    "popitem": _pop_every_item,
}


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("how", MUTATIONS_NEVER_STORED)
def test_a_change_in_place_that_is_never_stored_reaches_no_other_request(
    how: str, backend: str, request: pytest.FixtureRequest
) -> None:
    """The stores hand every request the same decoded values: whatever the app gets is its own copy."""

    async def mutate_then_fail(request: Request) -> JSONResponse:
        MUTATIONS_NEVER_STORED[how](request.session)
        raise RuntimeError("the request fails before its response: nothing is committed")

    async def websocket_mutates(websocket: WebSocket) -> None:
        await websocket.accept()
        MUTATIONS_THROUGH_READS["getitem"](websocket.session)  # a read-only snapshot: never stored
        await websocket.close()

    async def user(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.session["user"]))

    routes = [
        *BASIC_ROUTES,
        Route("/user", user),
        Route("/mutate_then_fail", mutate_then_fail),
        WebSocketRoute("/ws", websocket_mutates),
    ]
    store: MemoryStore | RedisStore = MemoryStore()
    if backend == "redis":
        server = request.getfixturevalue("redis_servers").get(REDIS_NAMES[-1])
        server.flushall()
        store = RedisStore(server.url)
    client = TestClient(make_app(routes, store=store), raise_server_exceptions=False)
    stored = {"cart": ["a"], "prefs": {"sizes": {}}, "user": 1}
    client.post("/update_session", json=stored)

    def websocket_once() -> None:
        with client.websocket_connect("/ws"):
            pass

    for go in (lambda: client.get("/mutate_then_fail"), websocket_once):
        assert client.get("/user").text == "1"  # the app took no list or dict: the values are kept, shared
        if isinstance(store, MemoryStore):
            assert all(entry.record.decoded is not None for entry in store._entries.values())
        else:
            assert len(store._decoded) == 1
        go()
        assert client.get("/view_session").json()["session"] == stored


def test_reading_a_scalar_costs_no_encoding_of_other_values() -> None:
    session = Session({"user": 1, "cart": [1, 2]})
    session._baseline = {"user": "1", "cart": "[1,2]"}
    assert session["user"] == 1
    assert session._read is None and not session._read_all
    dict.__getitem__(session, "cart").append(3)  # a change nobody could have made through a read
    assert session._changes() == ({}, [])


def test_clear_keeps_the_id_within_the_request_and_deletes_an_empty_record() -> None:
    async def clear_then_set(request: Request) -> JSONResponse:
        request.session.clear()
        request.session["fresh"] = True
        return JSONResponse(request.session)

    store = MemoryStore()
    client = TestClient(make_app([*BASIC_ROUTES, Route("/reset", clear_then_set)], store=store))
    first = cookie_value(client.post("/update_session", json={"old": 1}).headers["set-cookie"])
    assert "set-cookie" not in client.get("/reset").headers  # same id: nothing to tell the browser
    assert client.cookies["session"] == first
    assert client.get("/view_session").json() == {"session": {"fresh": True}}
    assert "expires=Thu, 01 Jan 1970" in client.post("/clear_session").headers["set-cookie"]
    assert len(store) == 0


def test_non_json_value_fails_at_the_write_and_stores_nothing() -> None:
    seen: dict[str, str] = {}

    async def bad_write(request: Request) -> JSONResponse:
        request.session["ok"] = 1
        try:
            request.session["when"] = {1, 2}
        except TypeError as error:
            seen["error"] = str(error)
        return JSONResponse(request.session)

    store = MemoryStore()
    client = TestClient(make_app([Route("/bad", bad_write)], store=store))
    assert client.get("/bad").json() == {"ok": 1}
    assert "'when'" in seen["error"] and "set" in seen["error"]


def test_bad_nested_value_fails_the_request_and_stores_nothing() -> None:
    async def nested_bad(request: Request) -> JSONResponse:
        request.session["cart"].append(object())
        request.session["other"] = "x"
        return JSONResponse({})

    store = MemoryStore()
    app = make_app([*BASIC_ROUTES, Route("/nested_bad", nested_bad)], store=store)
    client = TestClient(app)
    client.post("/update_session", json={"cart": [1]})
    with pytest.raises(TypeError, match=r"'cart'\[1\] is a object"):
        client.get("/nested_bad")
    assert client.get("/view_session").json() == {"session": {"cart": [1]}}


def test_too_large_session_raises_and_stores_nothing() -> None:
    store = MemoryStore(max_session_size=1024)
    client = TestClient(make_app(store=store))
    client.post("/update_session", json={"a": "x" * 100})
    with pytest.raises(SessionTooLarge):
        client.post("/update_session", json={"b": "y" * 2000})
    assert client.get("/view_session").json() == {"session": {"a": "x" * 100}}


def test_each_request_on_a_new_event_loop_without_lifespan() -> None:
    # TestClient without `with` runs every request in a new event loop, in a new thread.
    store = MemoryStore(clean_interval=0.01)
    client = TestClient(make_app(store=store))
    for n in range(20):
        client.post("/update_session", json={f"k{n}": n})
    assert len(client.get("/view_session").json()["session"]) == 20


def test_lifespan_shutdown_closes_the_store() -> None:
    store = MemoryStore()
    with TestClient(make_app(store=store)) as client:
        value = cookie_value(client.post("/update_session", json={"a": 1}).headers["set-cookie"])
        assert store._sweeper is not None
    assert store._sweeper is None
    with TestClient(make_app(store=store), cookies={"session": value}) as client:  # and it restarts on demand
        assert client.get("/view_session").json() == {"session": {"a": 1}}


def test_cookie_refreshed_past_half_its_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    client = TestClient(make_app(max_age=100, idle_timeout=1000))
    client.post("/update_session", json={"a": 1})
    assert "set-cookie" not in client.get("/view_session").headers
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 60)
    response = client.get("/view_session")
    assert response.json() == {"session": {"a": 1}}
    assert "Max-Age=100" in response.headers["set-cookie"]


def test_migrates_a_starlette_cookie() -> None:
    store = MemoryStore()
    legacy = TestClient(
        Starlette(routes=BASIC_ROUTES, middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET)])
    )
    value = cookie_value(legacy.post("/update_session", json={"cart": [1, 2], "user": "ada"}).headers["set-cookie"])
    client = TestClient(make_app(store=store), cookies={"session": value})
    response = client.get("/no_session")
    assert response.headers["set-cookie"].count(".") == 2 and len(store) == 1
    client.cookies.set("session", cookie_value(response.headers["set-cookie"]))
    assert client.get("/view_session").json() == {"session": {"cart": [1, 2], "user": "ada"}}


def test_expired_or_foreign_starlette_cookie_is_not_migrated() -> None:
    signer = itsdangerous.TimestampSigner("other-secret")
    foreign = signer.sign(base64.b64encode(json.dumps({"a": 1}).encode())).decode()
    client = TestClient(make_app(), cookies={"session": foreign})
    assert client.get("/view_session").json() == {"session": {}}
    old = itsdangerous.TimestampSigner(SECRET)
    old.get_timestamp = lambda: 1_000_000  # type: ignore[method-assign]
    expired = old.sign(base64.b64encode(json.dumps({"a": 1}).encode())).decode()
    client = TestClient(make_app(), cookies={"session": expired})
    assert client.get("/view_session").json() == {"session": {}}


def test_ensure_session_sets_a_cookie_for_an_empty_session() -> None:
    async def page(request: Request) -> PlainTextResponse:
        live = await ensure_session(request)
        return PlainTextResponse(str(live.version))

    store = MemoryStore()
    client = TestClient(make_app([*BASIC_ROUTES, Route("/page", page)], store=store))
    response = client.get("/page")
    assert "set-cookie" in response.headers and len(store) == 1
    again = client.get("/page")
    assert "set-cookie" not in again.headers and len(store) == 1


def test_concurrent_requests_on_different_keys_both_persist() -> None:
    gate = asyncio.Event()
    arrived: list[str] = []

    async def slow_set(request: Request) -> JSONResponse:
        key = request.query_params["key"]
        request.session[key] = True
        arrived.append(key)
        if len(arrived) == 2:
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)
        return JSONResponse({})

    app = make_app([*BASIC_ROUTES, Route("/set", slow_set)])

    async def run() -> None:
        import httpx2

        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/update_session", json={"base": 1})
            client.cookies.set("session", cookie_value(response.headers["set-cookie"]))
            await asyncio.gather(client.get("/set?key=a"), client.get("/set?key=b"))
            assert (await client.get("/view_session")).json() == {"session": {"base": 1, "a": True, "b": True}}

    asyncio.run(run())


# -- the per-request fast paths keep their promises --


def _raw_request(app: Any, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"t"), *headers]}
    asyncio.run(app(scope, receive, send))
    return sent


def test_an_apps_vary_header_is_extended_and_its_header_list_left_alone() -> None:
    shared = [(b"vary", b"Accept-Encoding"), (b"content-length", b"2")]  # one list, reused by every response

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["n"] = scope["session"].get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = LiveSessionMiddleware(app, secret_key=SECRET)
    for _ in range(2):
        headers = _raw_request(middleware, [])[0]["headers"]
        vary = [value for name, value in headers if name.lower() == b"vary"]
        assert vary == [b"Accept-Encoding, Cookie"]
    assert shared == [(b"vary", b"Accept-Encoding"), (b"content-length", b"2")]


def test_a_cookie_split_over_several_headers_is_found() -> None:
    store = MemoryStore()
    cookie = asyncio.run(seed_session(store, {"user": "ada"}, secret_key=SECRET))
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["session"].get("user"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = LiveSessionMiddleware(app, secret_key=SECRET, store=store)
    _raw_request(middleware, [(b"cookie", b"theme=dark"), (b"cookie", f"session={cookie}".encode())])
    _raw_request(middleware, [(b"cookie", f"session={cookie}".encode()), (b"cookie", b"theme=dark")])
    _raw_request(middleware, [(b"cookie", b"theme=dark")])
    assert seen == ["ada", "ada", None]


def test_the_verified_cookie_cache_carries_the_right_store_key() -> None:
    from live_session._ids import CookieSigner, new_session_id

    signer = CookieSigner([SECRET])
    session_id = new_session_id()
    cookie = signer.sign(session_id, 0)
    first, cached = signer.unsign(cookie), signer.unsign(cookie)
    assert first == cached == (session_id, 0, True, store_key(session_id))


def test_session_get_and_set_fast_paths() -> None:
    session = Session({"none": None, "cart": [1], "n": 1})
    assert session.get("none", "default") is None and session.get("missing", "default") == "default"
    assert session._read is None  # scalars cannot change in place
    session.get("cart").append(2)
    assert session._read == {"cart"}
    for value in ("x", 2, True, None, 1.5, [1], {"a": 1}):
        session["v"] = value
        assert session["v"] == value
    for bad in (float("nan"), float("inf"), (1,), {1: 2}, b"x"):
        with pytest.raises(TypeError, match="'v'"):
            session["v"] = bad
    with pytest.raises(TypeError):
        session[1] = "x"  # type: ignore[index]
    assert session["v"] == {"a": 1} and session._changes() == ({"v": '{"a":1}', "cart": "[1,2]"}, [])
