"""A TCP proxy on 127.0.0.1 for fault tests: it forwards, or black-holes, the traffic of every connection.

A black hole keeps every connection open (and accepts new ones) but forwards nothing in either
direction, not even a close: the network between client and server has gone silent, as when a
link, a NAT or a firewall drops packets without a reset. On ``resume()`` what was held back is
delivered, as TCP would retransmit it, and the connections carry on (or close, if either side
gave up on them meanwhile). The proxy runs its own event loop in a thread, so it keeps working
while a test blocks, and its tasks never mix with the tasks of the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TcpProxy"]

T = TypeVar("T")

_CHUNK = 64 * 1024


class TcpProxy:
    """``with TcpProxy(port) as proxy:`` forward 127.0.0.1:``proxy.port`` to 127.0.0.1:``port``."""

    host = "127.0.0.1"

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        # Each connection's task, and the writers of its two sides.
        self._handlers: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    # -- control, from any thread but the proxy's --

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def blackhole(self) -> None:
        """From the moment this returns until ``resume()``, no byte (and no close) goes through."""
        self._call(self._set_flowing(False))

    def resume(self, *, drop: bool = False) -> None:
        """Deliver what was held back, then forward as before.

        With ``drop``, every connection made before is closed instead and what it held back is lost,
        as when a NAT or a load balancer forgot them during the outage; new connections work.
        """
        self._call(self._resume(drop))

    def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    # -- the proxy's own event loop --

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _resume(self, drop: bool) -> None:
        if drop:
            for task, writers in list(self._handlers.items()):
                for writer in writers:
                    writer.transport.abort()
                task.cancel()
        await self._set_flowing(True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._flowing is not None
        self._handlers[task] = writers = [client_writer]
        try:
            # Accepted (the kernel completed the handshake), but nothing reaches the server yet.
            await self._flowing.wait()
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            writers.append(upstream_writer)
            try:
                await asyncio.gather(
                    self._pump(client_reader, upstream_writer),
                    self._pump(upstream_reader, client_writer),
                )
            finally:
                upstream_writer.close()
        except asyncio.CancelledError:
            # Dropped or stopped by the proxy itself. Ending normally matters: asyncio's stream server
            # logs a cancelled connection callback as an error.
            pass
        finally:
            client_writer.close()
            del self._handlers[task]

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(_CHUNK):
                await self._flowing.wait()
                target.write(data)
                await target.drain()
        except OSError:  # reset by either side: end this connection like a close
            pass
        await self._flowing.wait()  # a close is traffic too: it waits for the black hole to end
        with contextlib.suppress(OSError):
            target.close()
