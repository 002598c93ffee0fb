"""The demo app under a real uvicorn server, driven over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log_path = tmp_path_factory.mktemp("uvicorn") / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "examples"),
            "demo:app",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                log.close()
                raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()}") from None
            time.sleep(0.05)  # polling a port that is not open yet
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def recv(ws: object) -> dict[str, object]:
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
            assert "pear" in (await http.get("/")).text

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
