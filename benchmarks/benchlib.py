"""Shared pieces of the benchmark scripts: the session, the apps under test, a private Redis, tables.

Not a benchmark itself: the scripts next to it import it (``python benchmarks/<script>.py`` puts
this directory on ``sys.path``). Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import itsdangerous
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starsessions import InMemoryStore, JsonSerializer, SessionAutoloadMiddleware, generate_session_id
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions.stores.base import SessionStore
from starsessions.stores.redis import RedisStore as StarRedisStore

from live_session import LiveSessionMiddleware, MemoryStore, RedisStore, Store
from live_session.testing import seed_session

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret"  # noqa: S105 - a benchmark, not a deployment
TTL = 14 * 24 * 60 * 60
# The realistic small session of issue 6: a user id and a 10-item cart.
SESSION: dict[str, Any] = {"user": 42, "cart": [{"sku": f"item-{i}", "qty": i + 1} for i in range(10)]}
RAW_KEY = "bench:raw-session"

# Configurations under test, in table order: name -> label.
CONFIGS: dict[str, str] = {
    "none": "no session middleware (the limit)",
    "floor": "a pass-through middleware (the floor of any session middleware)",
    "minimal": "the simplest server-side JSON session (a plain dict; no signature, lifetime or version)",
    "starlette": "Starlette `SessionMiddleware`",
    "starsessions-memory": "starsessions, `InMemoryStore`",
    "live-memory": "live-session, `MemoryStore`",
    "redis-raw": "plain redis-py, 1 round trip (read) / 2 (write): the limit",
    "starsessions-redis": "starsessions, `RedisStore`",
    "live-redis": "live-session, `RedisStore`",
}
REDIS_CONFIGS = frozenset({"redis-raw", "starsessions-redis", "live-redis"})
BARE_CONFIGS = ("none", "floor")  # a route that does not read the session: one case each


class PassThrough:
    """The least any session middleware does: put a session in the scope, add a header to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["session"] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
            await send(message)

        await self.app(scope, receive, send_wrapper)


# -- the app under test --


async def read(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("user")))


async def write(request: Request) -> PlainTextResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return PlainTextResponse("ok")


async def bare(request: Request) -> PlainTextResponse:
    return PlainTextResponse("42")


async def cookie_route(request: Request) -> PlainTextResponse:
    """For the socket benchmark: the cookie the server seeded at startup."""
    return PlainTextResponse(request.app.state.cookie or "")


class MinimalSession:
    """The simplest server-side session of JSON values that keeps what the app changes: a floor for the session rows.

    It finds the id in the cookie, decodes the stored values into the plain dict the app gets
    (with the C scanner live-session uses too), and on the response stores back each value whose
    encoding changed (containers can change inside, so those are encoded again) and drops the keys
    the app deleted. No signature, lifetime, version, lock, size limit or broadcast: not a usable
    session layer, only the work every one must do.
    """

    def __init__(self, app: ASGIApp, sessions: dict[str, dict[str, str]]) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stored: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"cookie":
                stored = self.sessions.get(value.decode("latin-1").partition("=")[2], stored)
        decoded = {key: _scan(text, 0)[0] for key, text in stored.items()}
        session = scope["session"] = decoded.copy()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in session.items():
                    # A value the app did not replace can only have changed inside, if it is a container.
                    if value is decoded.get(key) and type(value) is not list and type(value) is not dict:
                        continue
                    text = _encode(value)
                    if stored.get(key) != text:
                        stored[key] = text
                if not stored.keys() <= session.keys():
                    for key in stored.keys() - session.keys():
                        del stored[key]
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
            await send(message)

        await self.app(scope, receive, send_wrapper)


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_encode = json.JSONEncoder(separators=(",", ":")).encode


def route_paths(config: str) -> tuple[str, str]:
    """The read and the write path of a configuration."""
    if config in BARE_CONFIGS:
        return "/bare", "/bare"
    if config == "redis-raw":
        return "/raw-read", "/raw-write"
    return "/read", "/write"


@dataclass
class BenchApp:
    """One configuration: the app, how to store its session (returns the cookie value), where to send requests."""

    name: str
    app: Starlette
    seed: Callable[[], Awaitable[str | None]]
    read_path: str = "/read"
    write_path: str = "/write"
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


def starlette_cookie() -> str:
    payload = base64.b64encode(json.dumps(SESSION).encode())
    return itsdangerous.TimestampSigner(SECRET).sign(payload).decode()


def build_app(name: str, redis_url: str | None = None) -> BenchApp:
    """The same Starlette app under configuration ``name`` (see CONFIGS)."""
    if name in REDIS_CONFIGS and redis_url is None:
        raise ValueError(f"{name} needs a Redis URL")
    routes = [Route("/read", read), Route("/write", write), Route("/bare", bare), Route("/cookie", cookie_route)]
    middleware: list[Middleware] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    read_path, write_path = route_paths(name)

    async def no_cookie() -> str | None:
        return None

    seed: Callable[[], Awaitable[str | None]] = no_cookie
    if name == "none":
        pass
    elif name == "floor":
        middleware = [Middleware(PassThrough)]
    elif name == "minimal":
        sessions: dict[str, dict[str, str]] = {}
        middleware = [Middleware(MinimalSession, sessions=sessions)]

        async def seed_minimal() -> str | None:
            sessions["bench"] = {key: _encode(value) for key, value in SESSION.items()}
            return "bench"

        seed = seed_minimal
    elif name == "starlette":
        middleware = [Middleware(SessionMiddleware, secret_key=SECRET, max_age=TTL)]

        async def seed_starlette() -> str | None:
            return starlette_cookie()

        seed = seed_starlette
    elif name in ("starsessions-memory", "starsessions-redis"):
        star_store: SessionStore
        if name == "starsessions-memory":
            star_store = InMemoryStore()
        else:
            connection = aioredis.Redis.from_url(str(redis_url))
            star_store = StarRedisStore(connection=connection, prefix="bench:starsessions:")
            closers.append(connection.aclose)
        middleware = [
            Middleware(StarSessionMiddleware, store=star_store, lifetime=TTL, cookie_https_only=False),
            Middleware(SessionAutoloadMiddleware),
        ]

        async def seed_starsessions() -> str | None:
            session_id = generate_session_id()
            now = time.time()
            data = {**SESSION, "__metadata__": {"lifetime": TTL, "created": now, "last_access": now}}
            await star_store.write(session_id, JsonSerializer().serialize(data), lifetime=TTL, ttl=TTL)
            return session_id

        seed = seed_starsessions
    elif name in ("live-memory", "live-redis"):
        store: Store = MemoryStore() if name == "live-memory" else RedisStore(str(redis_url), prefix="bench:live:")
        middleware = [Middleware(LiveSessionMiddleware, secret_key=SECRET, max_age=TTL, store=store)]
        closers.append(store.aclose)

        async def seed_live() -> str | None:
            return await seed_session(store, SESSION, secret_key=SECRET, ttl=TTL)

        seed = seed_live
    elif name == "redis-raw":
        client = aioredis.Redis.from_url(str(redis_url))
        closers.append(client.aclose)

        async def raw_read(request: Request) -> PlainTextResponse:
            data = await client.get(RAW_KEY)  # one round trip: the least a stored session can cost
            return PlainTextResponse("42" if data else "")

        async def raw_write(request: Request) -> PlainTextResponse:
            data = await client.get(RAW_KEY)  # read, then write: two round trips
            await client.set(RAW_KEY, data or b"{}", ex=TTL)
            return PlainTextResponse("ok")

        async def seed_raw() -> str | None:
            await client.set(RAW_KEY, json.dumps(SESSION), ex=TTL)
            return None

        routes += [Route("/raw-read", raw_read), Route("/raw-write", raw_write)]
        seed = seed_raw
    else:
        raise ValueError(f"unknown configuration {name!r}; one of {', '.join(CONFIGS)}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.cookie = await seed()
        yield
        for close in closers:
            await close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    return BenchApp(name, app, seed, read_path, write_path, closers)


# -- a private Redis --


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binary() -> str:
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("needs redis-server (Debian: apt-get install redis-server), or skip the Redis parts")


@contextlib.contextmanager
def redis_server(cores: set[int] | None = None) -> Iterator[str]:
    """Start a throwaway redis-server on a free port of 127.0.0.1; yields its URL, stops it at the end."""
    port = free_port()
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        if cores:
            pin(process.pid, cores)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def redis_version() -> str:
    binary = "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else shutil.which("redis-server")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return "?"


def pin(pid: int, cores: set[int]) -> None:
    """Keep a process on some cores (on 2 cores: the code measured on one, its helpers on the other)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > max(cores):
        os.sched_setaffinity(pid, cores)


# -- reporting --


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("starlette", "uvicorn", "redis", "hiredis", "starsessions", "broadcaster"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    return (
        f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}, Python {platform.python_version()}, "
        f"Redis {redis_version()}, {', '.join(versions)}; live-session at {code_version()} "
        f"({datetime.date.today().isoformat()})"
    )


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "an unknown commit"
    run = [git, "-C", str(ROOT)]
    head = subprocess.run([*run, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)  # noqa: S603
    dirty = subprocess.run([*run, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False)  # noqa: S603
    if head.returncode != 0:
        return "an unknown commit"
    return f"commit {head.stdout.strip()}" + (" with uncommitted changes in src/" if dirty.stdout.strip() else "")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
    """A Markdown table: the first ``text_columns`` left-aligned, the figures after them right-aligned."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + " --- |" * text_columns + " ---: |" * (len(headers) - text_columns),
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Target:
    """One target of issue 6: what was measured against what it should be."""

    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class PartResult:
    """What a part of the harness hands to run_all: Markdown for the README, targets, raw figures."""

    key: str
    title: str
    command: str
    markdown: str
    targets: list[Target]
    data: dict[str, Any]

    def targets_table(self) -> str:
        rows = [(t.what, t.goal, t.measured, "met" if t.met else "**missed**") for t in self.targets]
        return table(["target", "goal", "measured", ""], rows)

    def section(self, machine_line: str) -> str:
        parts = [f"## {self.title}", "", "```sh", self.command, "```", "", f"Machine: {machine_line}.", ""]
        parts += [self.markdown.rstrip(), ""]
        if self.targets:
            parts += ["Targets of issue 6, from this run:", "", self.targets_table(), ""]
        return "\n".join(parts)


def rate(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- per-request figures, in process and over sockets alike --

# (group, rows as (configuration, route)); live-session's row is compared with every other row of its group.
REQUEST_GROUPS: list[tuple[str, list[tuple[str, str]], str]] = [
    (
        "memory, read",
        [
            ("none", "read"),
            ("floor", "read"),
            ("minimal", "read"),
            ("starlette", "read"),
            ("starsessions-memory", "read"),
        ],
        "live-memory",
    ),
    (
        "memory, change a key",
        [
            ("none", "read"),
            ("floor", "read"),
            ("minimal", "write"),
            ("starlette", "write"),
            ("starsessions-memory", "write"),
        ],
        "live-memory",
    ),
    ("Redis, read", [("redis-raw", "read"), ("starsessions-redis", "read")], "live-redis"),
    ("Redis, read-modify-write", [("redis-raw", "write"), ("starsessions-redis", "write")], "live-redis"),
]


def case_name(config: str, route: str) -> str:
    return config if config in BARE_CONFIGS else f"{config}/{route}"


def request_cases(with_redis: bool) -> list[tuple[str, str]]:
    """Every (configuration, route) to measure, in table order."""
    cases: list[tuple[str, str]] = [(config, "read") for config in BARE_CONFIGS]
    for config in CONFIGS:
        if config not in BARE_CONFIGS and (with_redis or config not in REDIS_CONFIGS):
            cases += [(config, "read"), (config, "write")]
    return cases


def request_report(best: dict[str, float], where: str) -> tuple[str, list[Target]]:
    """A table of req/s with live-session's ratio to each peer, and the targets of issue 6."""
    rows: list[tuple[str, ...]] = []
    for group, peers, ours in REQUEST_GROUPS:
        route = "write" if "write" in group or "change" in group else "read"
        mine = best.get(case_name(ours, route))
        if mine is None:
            continue
        for config, peer_route in [*peers, (ours, route)]:
            value = best.get(case_name(config, peer_route))
            if value is None:
                continue
            label = CONFIGS[config]
            if config == "redis-raw":
                label = "plain redis-py, " + ("1 round trip" if route == "read" else "2 round trips") + " (the limit)"
            compare = "" if config == ours else ratio(mine / value)
            rows.append((group, label, rate(value), f"{1e6 / value:.0f}", compare))
    markdown = table(["case", "configuration", "req/s", "µs/request", "live-session ÷ this"], rows, text_columns=2)

    def get(config: str, route: str) -> float:
        return best.get(case_name(config, route), float("nan"))

    targets: list[Target] = []
    if case_name("live-memory", "read") in best:
        vs_starlette = get("live-memory", "read") / get("starlette", "read")
        vs_star = get("live-memory", "read") / get("starsessions-memory", "read")
        write_vs_starlette = get("live-memory", "write") / get("starlette", "write")
        targets += [
            Target(f"{where}: memory read vs Starlette", "≥ 1.5x", ratio(vs_starlette), vs_starlette >= 1.5),
            Target(f"{where}: memory read vs starsessions memory", "≥ 3x", ratio(vs_star), vs_star >= 3),
            Target(
                f"{where}: memory change-a-key vs Starlette",
                "≥ 2.5x",
                ratio(write_vs_starlette),
                write_vs_starlette >= 2.5,
            ),
        ]
    if case_name("live-redis", "read") in best:
        read_limit = get("redis-raw", "read") / get("live-redis", "read")
        write_limit = get("redis-raw", "write") / get("live-redis", "write")
        star_read = get("live-redis", "read") / get("starsessions-redis", "read")
        star_write = get("live-redis", "write") / get("starsessions-redis", "write")
        targets += [
            Target(
                f"{where}: Redis read, 1-round-trip limit ÷ live-session",
                "≤ 1.3x",
                ratio(read_limit),
                read_limit <= 1.3,
            ),
            Target(f"{where}: Redis read vs starsessions Redis", "≥ 2x", ratio(star_read), star_read >= 2),
            Target(
                f"{where}: Redis read-modify-write, 2-round-trip limit ÷ live-session",
                "≤ 1.3x",
                ratio(write_limit),
                write_limit <= 1.3,
            ),
            Target(
                f"{where}: Redis read-modify-write vs starsessions Redis", "≥ 1x", ratio(star_write), star_write >= 1
            ),
        ]
    return markdown, targets
