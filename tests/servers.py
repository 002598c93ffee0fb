"""Real servers for the tests: the demo app under uvicorn, on 127.0.0.1 at free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

__all__ = ["ROOT", "demo_server", "free_port", "live_app_server"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, alive: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if alive.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}:\n{log.read_text()}") from None
            time.sleep(0.05)  # waiting for a process to open its port, within the deadline


@contextmanager
def demo_server(
    workdir: Path, app: str = "demo:create", app_dir: Path = ROOT / "examples", **environment: str
) -> Iterator[str]:
    """An app (the demo shop by default) under uvicorn; yields ``"127.0.0.1:PORT"``.

    An ``app`` named ``module:create`` is a factory.
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"uvicorn-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **environment}
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), app, "--port", str(port)]
    if app.endswith(":create"):
        command.append("--factory")
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process, "uvicorn", log_path)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)
    # An exception the server only logged (in an endpoint, say) fails the test too.
    if "Traceback" in (text := log_path.read_text()):
        raise AssertionError(f"the demo server logged an error:\n{text}")


def live_app_server(workdir: Path, **environment: str) -> AbstractContextManager[str]:
    """The library's own minimal app (``tests/live_app.py``) under uvicorn."""
    return demo_server(workdir, "live_app:create", ROOT / "tests", **environment)
