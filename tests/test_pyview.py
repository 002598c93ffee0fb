"""live_session.pyview through PyView's real WebSocket protocol (Phoenix channel frames).

The example app (``examples/pyview_cart.py``) runs in process under Starlette's
TestClient: each "tab" GETs the page, then joins its view over
``/live/websocket`` with the page's CSRF token and topic, as PyView's
JavaScript client does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pyview import ConnectedLiveViewSocket, LiveView, LiveViewSocket, PyView, is_connected
from pyview.events import InfoEvent
from pyview.meta import PyViewMeta
from pyview.template import LiveRender, LiveTemplate, RenderedContent, Template
from pyview_cart import create_app
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from live_session import MemoryStore
from live_session.pyview import install, maybe_subscribe, put_session, session_for

from .conftest import SECRET

Frame = list[Any]


class Tab:
    """One browser tab: its page, and its view joined over a WebSocket."""

    def __init__(self, client: TestClient) -> None:
        page = client.get("/").text
        self.csrf = _find(r'name="csrf-token" content="([^"]+)"', page)
        self.page_session = _find(r'data-phx-session="([^"]*)"', page)
        self.topic = "lv:" + _find(r'id="(phx-[^"]+)"', page)
        self.client = client
        self.ref = 0
        self.rendered: dict[str, Any] = {}

    @contextmanager
    def joined(self) -> Iterator[Tab]:
        with self.client.websocket_connect("/live/websocket") as ws:
            self.ws = ws
            reply = self.send_first(
                "phx_join",
                {
                    "url": "http://testserver/",
                    "params": {"_csrf_token": self.csrf},
                    "session": self.page_session,
                    "static": "",
                },
            )
            assert reply[4]["status"] == "ok", reply
            self.rendered = reply[4]["response"]["rendered"]
            yield self

    def send_first(self, event: str, payload: dict[str, Any]) -> Frame:
        """Send the join: the first frame back must be its reply (no update may come before it)."""
        self.ws.send_text(json.dumps(["1", "0", self.topic, event, payload]))
        frame: Frame = json.loads(self.ws.receive_text())
        assert frame[:4] == ["1", "0", self.topic, "phx_reply"], frame
        return frame

    def send(self, event: str, payload: dict[str, Any]) -> Frame:
        """Send a frame and return PyView's reply to it (applying any push that comes first)."""
        self.ref += 1
        ref = str(self.ref)
        self.ws.send_text(json.dumps(["1", ref, self.topic, event, payload]))
        return self.receive(lambda frame: frame[1] == ref and frame[3] == "phx_reply")

    def click(self, name: str, **value: Any) -> Frame:
        return self.send("event", {"type": "click", "event": name, "value": value})

    def receive(self, wanted: Callable[[Frame], bool]) -> Frame:
        for _ in range(50):
            frame: Frame = json.loads(self.ws.receive_text())
            if frame[3] == "diff":
                self.rendered = _merge(self.rendered, frame[4])
            elif frame[3] == "phx_reply" and "diff" in frame[4].get("response", {}):
                self.rendered = _merge(self.rendered, frame[4]["response"]["diff"])
            if wanted(frame):
                return frame
        raise AssertionError("the frame waited for never came")

    def until(self, count: int) -> None:
        """Apply pushed diffs until the view shows ``count`` items."""
        if self.count != count:
            self.receive(lambda frame: frame[3] == "diff" and self.count == count)

    @property
    def count(self) -> int:
        return int(self.rendered["1"])

    @property
    def version(self) -> str:
        return str(self.rendered["2"])


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, pattern
    return match.group(1)


def _merge(rendered: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    return {**rendered, **diff}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(store: MemoryStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, secret_key=SECRET)) as test_client:
        yield test_client


def test_the_page_sets_the_cookie_and_carries_no_copy_of_the_session(client: TestClient) -> None:
    first = client.get("/")
    assert "set-cookie" in first.headers
    client.post("/empty")  # a write through request.session, before any view runs
    tab = Tab(client)
    assert tab.page_session.startswith("e30.")  # base64 of "{}": nothing of the session is in the page


def test_two_views_stay_in_sync(client: TestClient) -> None:
    a, b = Tab(client), Tab(client)
    with a.joined(), b.joined():
        assert a.count == b.count == 0
        a.click("add", item="Sencha")
        a.until(1)
        b.until(1)
        b.click("add", item="Assam")
        a.until(2)
        b.until(2)
        assert a.version == b.version
        b.click("remove", item="Sencha")
        a.until(1)
        assert "Assam" in json.dumps(a.rendered)


def test_a_plain_http_write_reaches_the_views(client: TestClient) -> None:
    a = Tab(client)
    with a.joined():
        a.click("add", item="Rooibos")
        a.click("add", item="Rooibos")
        a.until(2)
        client.post("/empty")
        # Emptying the last key ends the session (as Starlette's does): the view is told, then closed
        # with 4000 so PyView's client reconnects with the new cookie.
        a.until(0)
        with pytest.raises(WebSocketDisconnect) as closed:
            a.ws.receive_text()
        assert closed.value.code == 4000


def test_a_connected_mount_reads_the_store_not_the_page(client: TestClient) -> None:
    stale = Tab(client)  # rendered while the cart was empty
    adder = Tab(client)
    with adder.joined():
        adder.click("add", item="Sencha")
        adder.until(1)
    with stale.joined():
        assert stale.count == 1


def test_updates_reach_a_view_in_version_order(client: TestClient) -> None:
    a, b = Tab(client), Tab(client)
    with a.joined(), b.joined():
        for _ in range(30):
            a.click("add", item="Assam")
        seen: list[int] = []

        def record(frame: Frame) -> bool:
            if frame[3] == "diff" and "2" in frame[4]:
                seen.append(int(frame[4]["2"]))
            return b.count == 30

        b.receive(record)
        # Version 1 created the session and 30 adds followed. Under a burst, updates may be merged
        # (versions skipped), but a view never goes back.
        assert seen == sorted(set(seen)) and seen[-1] == 31


class WritesInMount(LiveView[dict[str, Any]]):
    """A view whose mount changes the session, then awaits (as a mount that queries a database does)."""

    async def mount(self, socket: LiveViewSocket[dict[str, Any]], session: dict[str, Any]) -> None:
        session = await maybe_subscribe(socket, session)
        socket.context = {"visits": session.get("visits", 0)}
        if is_connected(socket):
            await put_session(socket, "visits", socket.context["visits"] + 1)
            for _ in range(5):
                await asyncio.sleep(0)  # yields to the loop, where the update is waiting to be delivered

    async def handle_info(self, event: InfoEvent, socket: ConnectedLiveViewSocket[dict[str, Any]]) -> None:
        socket.context = {"visits": event.payload.session.get("visits", 0)}

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> RenderedContent:
        return LiveRender(VISITS, assigns, meta)


VISITS = LiveTemplate(Template("<p>{{ visits }}</p>"))


def test_updates_wait_for_the_join_reply(store: MemoryStore) -> None:
    app = PyView()
    app.add_live_view("/", WritesInMount)
    install(app, secret_key=SECRET, store=store)
    with TestClient(app) as client:
        tab = Tab(client)
        with tab.joined():  # asserts that the join's reply is the first frame
            frame = tab.receive(lambda frame: frame[3] == "diff")
            assert frame[4] == {"0": "1"}  # then the view's own write arrives


def test_views_that_disconnect_leave_nothing_behind(client: TestClient, store: MemoryStore) -> None:
    for _ in range(200):  # one leaked subscription would show; more views add only time
        tab = Tab(client)
        with tab.joined():
            assert tab.count == 0
    assert len(store._hub) == 0  # every subscription ended with its socket


def test_no_session_on_the_socket_closes_it_for_a_retry(store: MemoryStore) -> None:
    with TestClient(create_app(store, secret_key=SECRET)) as client:
        tab = Tab(client)
        client.cookies.clear()  # as after a logout in another tab: the page's cookie is gone
        with tab.joined():
            assert tab.count == 0
            with pytest.raises(WebSocketDisconnect) as closed:
                tab.ws.receive_text()
            assert closed.value.code == 4000


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition of the server (running in TestClient's thread), with a deadline."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_view_left_by_live_navigation_stops_following_at_once(client: TestClient, store: MemoryStore) -> None:
    first, second = Tab(client), Tab(client)
    with first.joined():
        wait_until(lambda: len(store._hub) == 1, "the view did not subscribe")
        first.send("phx_leave", {})  # the client navigates away; the WebSocket stays open
        wait_until(lambda: len(store._hub) == 0, "the left view still follows the session")
        second.ws = first.ws  # the next view joins on the same WebSocket
        reply = second.send_first(
            "phx_join",
            {"url": "http://testserver/", "params": {"_csrf_token": second.csrf}, "session": second.page_session},
        )
        assert reply[4]["status"] == "ok"
        wait_until(lambda: len(store._hub) == 1, "the new view did not subscribe")


class EndsItsSession(LiveView[dict[str, Any]]):
    """A view whose event ends the session, then goes on awaiting (as a slow handler does)."""

    async def mount(self, socket: LiveViewSocket[dict[str, Any]], session: dict[str, Any]) -> None:
        await maybe_subscribe(socket, session)
        socket.context = {"visits": 0}

    async def handle_event(self, event: str, payload: Any, socket: ConnectedLiveViewSocket[dict[str, Any]]) -> None:
        await session_for(socket).destroy()
        for _ in range(5):
            await asyncio.sleep(0)  # the follower closes the socket meanwhile

    async def render(self, assigns: dict[str, Any], meta: PyViewMeta) -> RenderedContent:
        return LiveRender(VISITS, assigns, meta)


def test_a_session_ended_inside_an_event_closes_the_view_cleanly(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = PyView()
    app.add_live_view("/", EndsItsSession)
    install(app, secret_key=SECRET, store=store)
    with TestClient(app) as client:
        tab = Tab(client)
        with tab.joined():
            tab.ws.send_text(json.dumps(["1", "9", tab.topic, "event", {"type": "click", "event": "x", "value": {}}]))
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    tab.ws.receive_text()
            assert closed.value.code == 4000
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
