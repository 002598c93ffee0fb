"""Per-request cost over real sockets: every configuration under uvicorn, loaded by many concurrent clients.

Run: .venv/bin/python benchmarks/socket_requests.py [--connections 64] [--duration 2] [--rounds 3] [--no-redis]

Needs wrk as the load generator (Debian: apt-get install -y wrk). Without it (or with
--loadgen python) a Python asyncio load generator runs in a separate process instead, and says so;
it is slower than wrk, so its figures are lower and only its ratios compare.

The app and configurations are those of inprocess_requests.py (benchlib.build_app): each runs in
its own uvicorn process (one worker, uvloop and httptools as uvicorn picks them) on 127.0.0.1,
which seeds its session at startup. Every (configuration, route) is loaded for --duration seconds
by --connections keep-alive connections, in interleaved rounds, best round kept. On 2+ cores the
servers run on core 0 and the load generator and Redis on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from benchlib import (
    CONFIGS,
    REDIS_CONFIGS,
    PartResult,
    Target,
    build_app,
    case_name,
    free_port,
    machine,
    pin,
    redis_server,
    request_cases,
    request_report,
    route_paths,
    table,
)

CONNECTIONS = 64
DURATION = 2.0
ROUNDS = 3
COMMAND = ".venv/bin/python benchmarks/socket_requests.py"
SERVER_CORES = {0}
HELPER_CORES = {1}


@dataclass
class Server:
    config: str
    port: int
    process: subprocess.Popen[bytes]
    cookie: str | None = None
    read_path: str = "/read"
    write_path: str = "/write"


def serve(config: str, port: int, redis_url: str | None) -> None:
    """The server side: one configuration under uvicorn (runs in its own process)."""
    import uvicorn

    bench = build_app(config, redis_url)
    uvicorn.run(bench.app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


def get(port: int, path: str, cookie: str | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Cookie": f"session={cookie}"} if cookie else {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def start(config: str, redis_url: str | None) -> Server:
    port = free_port()
    command = [sys.executable, __file__, "--serve", config, "--port", str(port)]
    if redis_url:
        command += ["--redis", redis_url]
    server = Server(config, port, subprocess.Popen(command))  # noqa: S603
    pin(server.process.pid, SERVER_CORES)
    return server


def ready(server: Server) -> None:
    """Wait for the server, take the cookie it seeded, and check both routes answer as they should."""
    deadline = time.monotonic() + 30
    while True:
        try:
            status, cookie = get(server.port, "/cookie")
            break
        except OSError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{server.config}: uvicorn did not start") from None
            time.sleep(0.1)
    server.cookie = cookie or None
    server.read_path, server.write_path = route_paths(server.config)
    for path, expected in ((server.read_path, "42"), (server.write_path, "ok")):
        status, body = get(server.port, path, server.cookie)
        if status != 200 or (path != "/bare" and body != expected):
            raise RuntimeError(f"{server.config} {path}: got {status} {body!r}, expected 200 {expected!r}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# -- load generators --


def run_wrk(port: int, path: str, cookie: str | None, connections: int, duration: float) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    if cookie:
        command += ["-H", f"Cookie: session={cookie}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    pin(process.pid, HELPER_CORES)
    out, _ = process.communicate()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {path}:\n{out}")
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def run_python_loadgen(port: int, path: str, cookie: str | None, connections: int, duration: float) -> float:
    command = [sys.executable, __file__, "--loadgen-child", str(port), path, cookie or "", str(connections)]
    command.append(str(duration))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    pin(process.pid, HELPER_CORES)
    out, _ = process.communicate()
    result = json.loads(out)
    if result["errors"]:
        raise RuntimeError(f"load generator saw {result['errors']} bad responses on {path}")
    return float(result["requests"]) / float(result["seconds"])


async def python_loadgen(port: int, path: str, cookie: str, connections: int, duration: float) -> dict[str, float]:
    """Keep-alive HTTP/1.1 GETs on ``connections`` connections for ``duration`` seconds."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if cookie:
        request += f"Cookie: session={cookie}\r\n"
    payload = (request + "\r\n").encode()
    counts = {"requests": 0, "errors": 0}
    deadline = time.monotonic() + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                counts["requests" if head.startswith(b"HTTP/1.1 200") else "errors"] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {**counts, "seconds": time.monotonic() - started}


# -- the benchmark --


@contextlib.contextmanager
def servers(configs: list[str], redis_url: str | None) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for config in configs:
            started[config] = start(config, redis_url)
        for server in started.values():
            ready(server)
        yield started
    finally:
        for server in started.values():
            stop(server)


def memory_for_reference(best: dict[str, float], targets: list[Target]) -> str:
    """The memory store's ratios against the in-process goals, and what meeting them would take here.

    Issue 6 sets the memory store's targets in process, where the session layer is most of what a
    request costs. Over sockets, uvicorn's own work per request (the limit row) comes on top of
    every configuration alike, so those ratios are shown for reference, not as targets.
    """
    limit = 1e6 / best["none"]
    rows = []
    for target in targets:
        if ": memory " not in target.what:
            continue
        peer, route, factor = (
            ("starsessions-memory", "read", 3.0)
            if "starsessions" in target.what
            else ("starlette", "write" if "change" in target.what else "read", 1.5 if "read" in target.what else 2.5)
        )
        needed = 1e6 / best[case_name(peer, route)] / factor
        simplest = 1e6 / best[case_name("minimal", route)]
        rows.append((target.what, target.goal, target.measured, f"≤ {needed:.0f} µs", f"{simplest:.0f} µs"))
    return (
        "The memory store's ratios against the goals issue 6 sets for it in process, for reference only: over "
        f"sockets, uvicorn's own work per request comes on top of every configuration alike (with no session "
        f"middleware at all, the limit row, a request takes {limit:.0f} µs).\n\n"
        + table(["ratio", "in-process goal", "measured", "the goal would need", "the simplest session takes"], rows)
    )


def run(
    *,
    connections: int = CONNECTIONS,
    duration: float = DURATION,
    rounds: int = ROUNDS,
    with_redis: bool = True,
    loadgen: str = "auto",
) -> PartResult:
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
        if loadgen == "python":
            print("wrk not found (Debian: apt-get install -y wrk): using the slower Python load generator")
    elif loadgen == "wrk" and not shutil.which("wrk"):
        sys.exit("--loadgen wrk: wrk not found (Debian: apt-get install -y wrk)")
    load = run_wrk if loadgen == "wrk" else run_python_loadgen
    cases = request_cases(with_redis)
    configs = [config for config in CONFIGS if with_redis or config not in REDIS_CONFIGS]
    with redis_server(HELPER_CORES) if with_redis else contextlib.nullcontext(None) as url, servers(configs, url) as up:
        plan = []
        for config, route in cases:
            server = up[config]
            path = server.read_path if route == "read" else server.write_path
            load(server.port, path, server.cookie, connections, 1)  # warm up
            plan.append((case_name(config, route), server, path))
        best = dict.fromkeys((name for name, *_ in plan), 0.0)
        for _ in range(rounds):
            for name, server, path in plan:
                best[name] = max(best[name], load(server.port, path, server.cookie, connections, duration))
    markdown, targets = request_report(best, f"uvicorn, {connections} connections")
    markdown += "\n\n" + memory_for_reference(best, targets)
    targets = [target for target in targets if ": memory " not in target.what]
    tool = "wrk -t1" if loadgen == "wrk" else "a Python asyncio load generator (wrk was not installed)"
    markdown = (
        f"The same app and configurations, each in its own uvicorn process (one worker; uvloop, httptools) on "
        f"127.0.0.1, loaded by {tool} with {connections} keep-alive connections, {duration:g} s per case, best of "
        f"{rounds} interleaved rounds. Servers on core 0; load generator and Redis on core 1.\n\n" + markdown
    )
    title = f"Per-request cost over sockets: uvicorn, {connections} concurrent connections"
    return PartResult("sockets", title, COMMAND, markdown, targets, {"rps": best, "loadgen": loadgen})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per case and round")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis configurations")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--loadgen-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.redis)
        return
    if args.loadgen_child:
        port, path, cookie, connections, duration = args.loadgen_child
        result = asyncio.run(python_loadgen(int(port), path, cookie, int(connections), float(duration)))
        print(json.dumps(result))
        return
    part = run(
        connections=args.connections,
        duration=args.duration,
        rounds=args.rounds,
        with_redis=not args.no_redis,
        loadgen=args.loadgen,
    )
    print(f"Machine: {machine()}\n")
    print(part.markdown, end="\n\n")
    print(part.targets_table())


if __name__ == "__main__":
    main()
