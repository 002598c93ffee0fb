"""PyView LiveViews that write the session and re-render when it changes, wherever it changes.

Install with ``pip install 'live-session[pyview]'`` (pyview-web 0.9)::

    from pyview import LiveView, PyView
    from pyview.events import BaseEventHandler, InfoEvent, event, info
    from live_session.pyview import install, maybe_subscribe, modify_session

    class Cart(BaseEventHandler, LiveView[dict]):
        async def mount(self, socket, session):
            session = await maybe_subscribe(socket, session)
            socket.context = {"cart": session.get("cart", [])}

        @event("add")
        async def add(self, event, payload, socket):
            # Atomic: two tabs adding at once both count. (Not put_session(socket, "cart",
            # socket.context["cart"] + [item]): the context may lag behind the store.)
            await modify_session(socket, lambda data: data.setdefault("cart", []).append(payload["item"]))

        @info("live_session_updated")
        async def on_session(self, event: InfoEvent, socket):
            socket.context["cart"] = event.payload.session.get("cart", [])

    app = PyView()
    app.add_live_view("/", Cart)
    install(app, secret_key="change-me")  # after any change to app.rootTemplate

Every change to the session, from this view, another tab, another process or
a plain HTTP handler, reaches ``handle_info`` as ``InfoEvent("live_session_updated",
update)``, where ``update`` is a :class:`~live_session.SessionUpdate`. A socket
gets its updates one at a time, in version order, after PyView has answered
its join; a burst is merged into one update. When the session ends or gets a
new id (logout, login), that last update is delivered, then the view's
WebSocket is closed with code 4000: PyView's client reconnects with the
browser's current cookie and mounts the view again.

This module relies on internals of pyview-web 0.9 (``socket.websocket``, the
reply PyView sends to a join, and the session copy its page template embeds);
importing it with another version raises ``ImportError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from starlette.websockets import WebSocket

from ._errors import SessionNotFound
from ._live import SCOPE_KEY, Connection, LiveSession, live_session, live_session_of
from ._middleware import LiveSessionMiddleware
from ._updates import SessionUpdate

try:
    from pyview import ConnectedLiveViewSocket, LiveViewSocket, PyView, RootTemplateContext, is_connected
    from pyview.events import InfoEvent
    from pyview.session import serialize_session
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError("live_session.pyview needs PyView: pip install 'live-session[pyview]'") from error

__all__ = [
    "EVENT",
    "delete_session",
    "install",
    "maybe_subscribe",
    "modify_session",
    "put_session",
    "session_for",
    "update_session",
]

SUPPORTED = ("0.9.",)
_version = importlib.metadata.version("pyview-web")
if not _version.startswith(SUPPORTED):  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"live_session.pyview supports pyview-web 0.9.x and relies on its internals; found {_version}. "
        "Install a supported version: pip install 'live-session[pyview]'"
    )

EVENT = "live_session_updated"
# Closing a view's WebSocket with this code makes PyView's client (Phoenix's) reconnect at once;
# 1000 would not. Used when the session ended or got a new id, so the page picks up its new cookie.
CLOSE_SESSION_CHANGED = 4000

logger = logging.getLogger("live_session")

# One follower task per connected socket.
_followers: weakref.WeakKeyDictionary[Any, asyncio.Task[None]] = weakref.WeakKeyDictionary()
# Per WebSocket: join replies waited for, and whether we closed it.
_watched: weakref.WeakKeyDictionary[WebSocket, _Watched] = weakref.WeakKeyDictionary()


def install(app: PyView, **options: Any) -> None:
    """Serve ``app`` with ``LiveSessionMiddleware(**options)`` and keep the session out of its pages.

    PyView copies the session into every page it renders (signed, not
    encrypted) and hands that copy to the connected ``mount``. With
    live-session the connected view reads the store instead, through
    ``maybe_subscribe``, so the page carries an empty copy and the data stays
    on the server. Call it after any change to ``app.rootTemplate``.
    """
    app.add_middleware(LiveSessionMiddleware, **options)
    render_page = app.rootTemplate
    empty = serialize_session({})

    def template(context: RootTemplateContext) -> str:
        return render_page({**context, "session": empty})

    app.rootTemplate = template


async def maybe_subscribe(
    socket: LiveViewSocket[Any], session: Mapping[str, Any], *, max_queue: int = 64
) -> dict[str, Any]:
    """Call it in ``mount``; returns the session as it is now in the store.

    On the page's HTTP render it makes sure the session exists (the response
    sets its cookie), so the view's WebSocket has a session to follow. On the
    connected mount it subscribes the view: every later change arrives in
    ``handle_info`` as ``InfoEvent("live_session_updated", update)``. The
    session PyView passes to a connected mount is a copy from when the page
    was rendered; use the returned one.

    A connected view with no session to follow (it ended between the page and
    the WebSocket, as at logout) gets an empty session, and its WebSocket is
    closed with code 4000 after the join so the client retries with its
    newest cookie.
    """
    if not is_connected(socket):
        live = live_session_of(session)
        await live._ensure()
        return dict(live.data)
    if socket in _followers:
        return dict(await session_for(socket).refresh())
    state = _connection(socket.websocket)
    joined = _join_replied(socket)
    first: asyncio.Future[SessionUpdate] = asyncio.get_running_loop().create_future()
    _followers[socket] = state.spawn(_follow(socket, session_for(socket), first, joined, max_queue))
    try:
        snapshot = await first
    except SessionNotFound:
        state.spawn(_close_after(joined, socket.websocket))
        return {}
    return dict(snapshot.session)


def session_for(socket: LiveViewSocket[Any]) -> LiveSession:
    """The view's :class:`~live_session.LiveSession`, for the rest of the API (``modify``, ``subscribe``...)."""
    if is_connected(socket):
        return live_session(socket.websocket)
    raise TypeError("session_for() needs a connected socket; on the HTTP render use the `session` mount gets")


async def put_session(socket: LiveViewSocket[Any], key: str, value: Any) -> None:
    """Set one key of the view's session: stored at once and delivered to every view and tab following it.

    This and the other writers below drop the write, with a log line, when the
    view's session has ended (the view is about to reconnect with its new one).
    """
    with _unless_ended():
        await session_for(socket).put(key, value)


async def update_session(
    socket: LiveViewSocket[Any], values: Mapping[str, Any] = MappingProxyType({}), /, **kwargs: Any
) -> None:
    """Set several keys in one atomic change."""
    with _unless_ended():
        await session_for(socket).update(values, **kwargs)


async def delete_session(socket: LiveViewSocket[Any], *keys: str) -> None:
    """Delete keys in one atomic change."""
    with _unless_ended():
        await session_for(socket).delete(*keys)


async def modify_session(socket: LiveViewSocket[Any], fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Atomic read-modify-write (see ``LiveSession.modify``); returns the contents as committed ({} if ended)."""
    with _unless_ended():
        return await session_for(socket).modify(fn)
    return {}


# -- internals --


@contextlib.contextmanager
def _unless_ended() -> Iterator[None]:
    try:
        yield
    except SessionNotFound as error:
        logger.info("dropped a write from a PyView view whose session has ended: %s", error)


def _connection(websocket: WebSocket) -> Connection:
    state = websocket.scope.get(SCOPE_KEY)
    if not isinstance(state, Connection):
        raise RuntimeError("live_session.pyview needs LiveSessionMiddleware: call live_session.pyview.install(app)")
    return state


def _join_replied(socket: ConnectedLiveViewSocket[Any]) -> asyncio.Event:
    """An event set once PyView has sent its reply to this socket's join.

    PyView mounts the view, renders it, then sends the reply; an update sent
    before that reply would reach a client that has no view to patch yet.
    PyView offers no hook there, so the WebSocket's ``send_text`` is watched
    for the reply's frame (``[join_ref, ref, topic, "phx_reply", ...]``).
    """
    event = asyncio.Event()
    _watch(socket.websocket).joins[socket.topic] = event
    return event


class _Watched:
    """What is watched on one of PyView's WebSockets: join replies pending, and whether we closed it."""

    def __init__(self, websocket: WebSocket) -> None:
        self.joins: dict[str, asyncio.Event] = {}
        self.closed = False
        send_text = websocket.send_text

        async def watched_send_text(data: str) -> None:
            if self.closed:
                return  # we closed it (the session ended): PyView's late replies have no one to reach
            await send_text(data)
            if self.joins:
                head = data[:512]
                for topic in [topic for topic in self.joins if f'"{topic}", "phx_reply"' in head]:
                    self.joins.pop(topic).set()

        websocket.send_text = watched_send_text  # type: ignore[method-assign]


def _watch(websocket: WebSocket) -> _Watched:
    watched = _watched.get(websocket)
    if watched is None:
        watched = _watched[websocket] = _Watched(websocket)
    return watched


async def _close(websocket: WebSocket, reason: str) -> None:
    """Close with 4000, so PyView's client reconnects with the browser's newest cookie."""
    _watch(websocket).closed = True
    try:
        await websocket.close(CLOSE_SESSION_CHANGED, reason)
    except Exception as error:  # already gone: nothing to tell
        logger.debug("closing a PyView WebSocket that had already gone: %r", error)


def _left(socket: ConnectedLiveViewSocket[Any]) -> asyncio.Event:
    """An event set when PyView closes this view's socket (on leave, live navigation or disconnect)."""
    event = asyncio.Event()
    close: Callable[[], Awaitable[None]] = socket.close

    async def watched_close() -> None:
        event.set()
        await close()

    socket.close = watched_close  # type: ignore[method-assign]
    return event


async def _follow(
    socket: ConnectedLiveViewSocket[Any],
    live: LiveSession,
    first: asyncio.Future[SessionUpdate],
    joined: asyncio.Event,
    max_queue: int,
) -> None:
    """Deliver the session's updates to the view, one at a time, until the socket or the session ends."""
    left = asyncio.ensure_future(_left(socket).wait())
    try:
        async with live.subscribe(max_queue=max_queue) as updates:
            snapshot = await anext(updates, None)
            if snapshot is None:
                raise SessionNotFound("the store closed")
            if not first.done():  # else maybe_subscribe was cancelled
                first.set_result(snapshot)
            await joined.wait()
            while True:
                coming = asyncio.ensure_future(anext(updates))
                await asyncio.wait([coming, left], return_when=asyncio.FIRST_COMPLETED)
                if not coming.done():  # the view was left; with live navigation its WebSocket lives on
                    coming.cancel()
                    return
                try:
                    update = updates.merge_pending(coming.result())
                except StopAsyncIteration:
                    return  # the store closed
                try:
                    await socket.send_info(InfoEvent(EVENT, update))
                except Exception:
                    logger.exception("handle_info failed on a %s update; the view keeps following", update.reason)
                if update.terminal:
                    await _close(socket.websocket, update.reason)
                    return
    except asyncio.CancelledError:
        first.cancel()
        raise
    except Exception as error:
        if first.done():
            logger.exception("following the session of a PyView socket failed")
        else:
            first.set_exception(error)  # raised by maybe_subscribe, in mount
    finally:
        left.cancel()
        _followers.pop(socket, None)


async def _close_after(joined: asyncio.Event, websocket: WebSocket) -> None:
    await joined.wait()
    await _close(websocket, "no session")
