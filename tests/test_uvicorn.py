"""The demo app under a real uvicorn server, driven over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .servers import live_app_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_app_server(tmp_path_factory.mktemp("uvicorn")) as address:
        yield address


async def recv(ws: object) -> dict[str, Any]:
    data = json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[attr-defined]
    assert isinstance(data, dict)
    return data


def test_form_post_and_live_writes_reach_every_tab(server: str) -> None:
    async def run() -> None:
        async with httpx2.AsyncClient(base_url=f"http://{server}") as http:
            page = await http.get("/")
            assert page.status_code == 200 and "set-cookie" in page.headers
            cookie = f"session={http.cookies['session']}"
            headers = {"Cookie": cookie}
            origin = f"http://{server}"
            async with (
                connect(f"ws://{server}/live", additional_headers=headers, origin=origin) as tab_a,  # type: ignore[arg-type]
                connect(f"ws://{server}/live", additional_headers=headers) as tab_b,
            ):
                assert (await recv(tab_a))["reason"] == "snapshot"
                assert (await recv(tab_b))["reason"] == "snapshot"
                response = await http.post("/add", data={"item": "apple"})
                assert response.status_code == 303
                for tab in (tab_a, tab_b):
                    assert (await recv(tab))["session"] == {"cart": ["apple"]}
                await tab_b.send(json.dumps({"add": "pear"}))
                for tab in (tab_a, tab_b):
                    assert (await recv(tab))["session"] == {"cart": ["apple", "pear"]}
            assert (await http.get("/")).json()["session"] == {"cart": ["apple", "pear"]}

    asyncio.run(run())


def test_cross_site_handshake_gets_403(server: str) -> None:
    async def run() -> None:
        async with httpx2.AsyncClient(base_url=f"http://{server}") as http:
            await http.get("/")
            headers = {"Cookie": f"session={http.cookies['session']}"}
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://{server}/live", additional_headers=headers, origin="http://evil.example"):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403

    asyncio.run(run())
