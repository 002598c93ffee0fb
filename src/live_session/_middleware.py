"""``LiveSessionMiddleware``: Starlette's ``SessionMiddleware``, with the data kept server-side."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from starlette.datastructures import MutableHeaders, Secret
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import SessionTooLarge, StoreUnavailable
from ._ids import CookieSigner
from ._live import SCOPE_KEY, Connection, create_session
from ._memory import MemoryStore
from ._migrate import read_starlette_cookie
from ._session import ReadOnlySession, Session
from ._store import Record, Store
from ._values import decode

__all__ = ["LiveSessionMiddleware"]

logger = logging.getLogger("live_session")

_FOURTEEN_DAYS = 14 * 24 * 60 * 60


class LiveSessionMiddleware:
    """A drop-in for Starlette's ``SessionMiddleware`` that keeps the data in a store.

    It takes the same arguments with the same defaults; the cookie holds only
    a signed session id. Live connections write through ``live_session(conn)``,
    and every change reaches every subscriber of the session::

        app = Starlette(routes=routes, middleware=[
            Middleware(LiveSessionMiddleware, secret_key=os.environ["SECRET_KEY"]),
        ])

    ``secret_key`` may be a list: the first key signs, every key verifies.
    ``store`` defaults to a new ``MemoryStore``. ``idle_timeout`` is how long
    the server keeps an unused session (default: ``max_age``, or 14 days when
    ``max_age`` is None); ``absolute_timeout``, if set, ends every session
    that many seconds after it was created, however active it is (its
    subscribers are told ``expired``). A WebSocket handshake carrying a session cookie from
    an ``Origin`` other than the app's own host, or one of ``allowed_origins``,
    is refused with 403. Valid cookies of Starlette's ``SessionMiddleware``
    signed with the same key become server-side sessions on first use.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret | Sequence[str | Secret],
        session_cookie: str = "session",
        max_age: int | None = _FOURTEEN_DAYS,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: Store | None = None,
        idle_timeout: float | None = None,
        absolute_timeout: float | None = None,
        allowed_origins: Sequence[str] = (),
        migrate_starlette_cookies: bool = True,
    ) -> None:
        self.app = app
        self.secret_keys = _secret_keys(secret_key)
        self.signer = CookieSigner(self.secret_keys)
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        self.store: Store = store if store is not None else MemoryStore()
        # Offer the store the values decoded for a request (after it) only if it can keep them.
        self._offer_decoded = type(self.store).keep_decoded is not Store.keep_decoded
        if idle_timeout is None:
            # As in Starlette, max_age <= 0 is accepted: such a session is gone at once.
            self.idle_timeout = float(_FOURTEEN_DAYS if max_age is None else max_age)
        else:
            self.idle_timeout = _positive("idle_timeout", idle_timeout)
        self.absolute_timeout = None if absolute_timeout is None else _positive("absolute_timeout", absolute_timeout)
        self.allowed_origins = frozenset(origin.lower().rstrip("/") for origin in allowed_origins)
        self.migrate_starlette_cookies = migrate_starlette_cookies
        # Attribute names and case exactly as Starlette writes them, for code that reads the header.
        flags = "httponly; samesite=" + same_site
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        # A cookie this old (in seconds) is sent again, so the browser keeps it while the server does.
        self._refresh_after = max_age / 2 if max_age is not None and max_age > 0 else math.inf
        max_age_attr = f"Max-Age={max_age}; " if max_age is not None else ""
        self._set_cookie_prefix = f"{session_cookie}="
        self._cookie_start = len(self._set_cookie_prefix)
        self._set_cookie_suffix = f"; path={path}; {max_age_attr}{flags}"
        self._expire_cookie = f"{session_cookie}=null; path={path}; expires=Thu, 01 Jan 1970 00:00:00 GMT; {flags}"
        self._cookie_name = session_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        websocket = kind == "websocket"
        # The values the session was built from, to offer the store after the request (keep_decoded).
        loaded: Mapping[str, Any] | None = None
        cookie = self._read_cookie(scope)
        session_id: str | None = None
        key: str | None = None
        record: Record | None = None
        issued = 0
        legacy: dict[str, Any] | None = None
        if cookie:
            verified = self.signer.unsign(cookie)
            if verified is not None:
                session_id, issued, primary, key = verified
                if not primary:
                    issued = 0  # signed with an older key: re-sign it with the current one
                # Loading extends the idle lifetime in the same step (one round trip on a network store).
                try:
                    record = await self.store.load(key, ttl=self.idle_timeout)
                except StoreUnavailable as error:
                    await _unavailable(scope, receive, send, error)
                    return
                if record is None:
                    session_id = key = None  # unknown or expired: never adopted
            elif self.migrate_starlette_cookies:
                legacy = read_starlette_cookie(cookie, self.secret_keys, self.max_age)

        if record is not None:
            shared = record.decoded
            data: Mapping[str, Any]
            if shared is None:
                data = decoded = {}
                for name, text in record.data.items():
                    decoded[name] = decode(text)
            else:
                data = shared  # copied into the session; its lists and dicts are copied when handed out
            session = ReadOnlySession(data) if websocket else Session(data)
            session._baseline = record.data
            if shared is not None:
                session._shared = shared
            if self._offer_decoded and not websocket:
                loaded = data
        else:
            session = ReadOnlySession(legacy or ()) if websocket else Session(legacy or ())
        state = Connection(self, session, session_id, key, record, websocket, bool(cookie), issued)
        session._connection = state
        scope["session"] = session
        scope[SCOPE_KEY] = state

        if websocket:
            if (record is not None or legacy) and not self._origin_allowed(scope):
                logger.warning("refused a WebSocket handshake carrying a session cookie from a foreign Origin")
                await _refuse_websocket(scope, receive, send, 403, 1008, "Cross-origin WebSocket refused")
                return
            try:
                await self.app(scope, receive, send)
            finally:
                session._connection = None
                if state.tasks:
                    await state.cancel_tasks()
            return

        if legacy:
            try:
                await self._migrate(state, legacy)
            except StoreUnavailable as error:
                await _unavailable(scope, receive, send, error)
                return

        failed = False

        async def send_wrapper(message: Message) -> None:
            nonlocal failed
            if failed:
                return  # the app's response was replaced by the 503
            if message["type"] == "http.response.start":
                state.response_started = True
                # Something to store: a new session, or keys set, deleted or read (changed in place?).
                if state.key is None or session._touched or session._read or session._read_all:
                    try:
                        await self._commit(state)
                    except StoreUnavailable as error:
                        # The changes were not stored, so the client must not see the app's success.
                        failed = True
                        await _unavailable(scope, receive, send, error)
                        return
                self._set_headers(state, message)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except StoreUnavailable as error:
            if state.response_started:
                raise
            await _unavailable(scope, receive, send, error)  # a live write in the app, say
        finally:
            session._connection = None  # no reference cycle outlives the request
            if loaded is not None:
                current = state.record
                if current is not None and current.decoded is None:  # else the store holds them already
                    self._offer_values(state, current, loaded)

    def _offer_values(self, state: Connection, record: Record, loaded: Mapping[str, Any]) -> None:
        """Once the app is done: offer the store the session's values as ``record`` holds them, if the app changed none.

        ``loaded`` holds the values the session was built from. The store may keep them for the next
        requests on this session (``Store.keep_decoded``).
        """
        key = state.key
        if key is not None:
            session = state.session
            self.store.keep_decoded(key, record, lambda: session._unchanged_values(loaded, record.data))

    async def _migrate(self, state: Connection, legacy: dict[str, Any]) -> None:
        """Turn a Starlette cookie session into a stored one, before the app runs; drop it if it cannot be."""
        try:
            session_id, record = await create_session(self.store, legacy, self.idle_timeout, self.absolute_timeout)
        except (TypeError, SessionTooLarge) as error:
            logger.warning("dropped a Starlette session cookie that cannot be migrated: %s", error)
            state.session._reset({}, {})
            state.cookie = "expire"
            return
        state.adopt(session_id)
        state.record = record
        state.session._baseline = record.data
        state.cookie = "set"

    async def _commit(self, state: Connection) -> None:
        """Store what the request changed (a new session gets an id), just before the response starts."""
        session = state.session
        if state.key is None:
            if session.modified and session:
                session_id, state.record = await create_session(
                    self.store, session, self.idle_timeout, self.absolute_timeout
                )
                state.adopt(session_id)
                state.cookie = "set"
            return
        changes, removed = session._changes()
        if changes or removed:
            record = await self.store.commit(
                state.key, changes, removed, ttl=self.idle_timeout, drop_if_empty=True, base=state.record
            )
            state.record = record
            if record is None:
                # Destroyed or expired while this request ran: a late commit never brings it back.
                logger.info("session ended during the request; its changes were not saved")
                state.adopt(None)
            elif not record.data:
                state.adopt(None)
                state.cookie = "expire"
            # Otherwise the cookie stays as it is: it holds only the id, which did not change.

    def _set_headers(self, state: Connection, message: Message) -> None:
        """Add ``Vary: Cookie`` if the app used the session, and the cookie if it must be set or expired."""
        session = state.session
        cookie = state.cookie
        if cookie is None and state.key is not None and time.time() - state.issued > self._refresh_after:
            # Re-send a cookie past half its Max-Age: the load extended the server's lifetime, so the
            # browser keeps it as long as the server keeps the session.
            cookie = "set"
        if not (session.accessed or cookie):
            return
        # ASGI allows any iterable of header pairs (a tuple, say), and the app may reuse its list:
        # work on a list of our own.
        raw = message["headers"] = list(message.get("headers", ()))
        for name, _ in raw:
            if len(name) == 4 and name.lower() == b"vary":
                MutableHeaders(raw=raw).add_vary_header("Cookie")
                break
        else:
            raw.append((b"vary", b"Cookie"))
        if cookie == "set" and state.session_id is not None:
            value = self.signer.sign(state.session_id, int(time.time()))
            raw.append((b"set-cookie", (self._set_cookie_prefix + value + self._set_cookie_suffix).encode("latin-1")))
        elif cookie == "expire":
            raw.append((b"set-cookie", self._expire_cookie.encode("latin-1")))

    def _read_cookie(self, scope: Scope) -> str | None:
        raw: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                raw = value if raw is None else raw + b"; " + value
        if raw is None:
            return None
        header = raw.decode("latin-1")
        if ";" not in header and header.startswith(self._set_cookie_prefix):
            return header[self._cookie_start :].strip()  # only our cookie: no parsing needed
        return cookie_parser(header).get(self._cookie_name)

    def _origin_allowed(self, scope: Scope) -> bool:
        origin = host = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1").strip().lower().rstrip("/")
            elif name == b"host":
                host = value.decode("latin-1").strip().lower()
        if origin is None:
            return True  # not a browser: cross-site hijacking needs one
        if origin in self.allowed_origins:
            return True
        if host is None:
            return False
        # Compare host and port, not the scheme: behind a TLS-terminating proxy the app sees ws://
        # while the page's Origin says https://. Default ports are dropped on both sides.
        netloc = origin.partition("://")[2]
        return bool(netloc) and _strip_default_port(netloc) == _strip_default_port(host)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                # End every subscription first, so live connections finish and shutdown is not held up.
                await self.store.aclose()
            return message

        return wrapped


async def _unavailable(scope: Scope, receive: Receive, send: Send, error: StoreUnavailable) -> None:
    """Answer 503 (a WebSocket handshake: refused, or closed with 1013 "try again later")."""
    logger.warning("session store unavailable, answered 503: %s", error)
    text = "Session store unavailable, try again shortly"
    if scope["type"] == "websocket":
        await _refuse_websocket(scope, receive, send, 503, 1013, text)
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, status: int, code: int, text: str) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": text.encode()})
    else:  # servers answer a close before accept with 403
        await send({"type": "websocket.close", "code": code})


def _positive(name: str, seconds: float) -> float:
    value = float(seconds)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return value


def _strip_default_port(netloc: str) -> str:
    for suffix in (":80", ":443"):
        if netloc.endswith(suffix):
            return netloc[: -len(suffix)]
    return netloc


def _secret_keys(secret_key: str | Secret | Sequence[str | Secret]) -> list[str]:
    if isinstance(secret_key, str | Secret):
        keys = [str(secret_key)]
    elif isinstance(secret_key, Sequence) and not isinstance(secret_key, bytes | bytearray):
        keys = [str(key) for key in secret_key if isinstance(key, str | Secret)]
        if len(keys) != len(secret_key):
            raise TypeError("secret_key: every key in the list must be a str or starlette's Secret")
    else:
        raise TypeError(f"secret_key must be a str, a Secret or a list of them, got {type(secret_key).__name__}")
    if not keys or not all(keys):
        raise ValueError("secret_key must be a non-empty string (or a non-empty list of non-empty strings)")
    return keys
