"""Where live-session's per-request time goes: cProfile (or pyinstrument) of the in-process request paths.

Run: .venv/bin/python benchmarks/profile_requests.py [--case live-memory/read ...] [--requests 20000]
     [--top 25] [--pyinstrument]

Drives the app of inprocess_requests.py through ASGI, as that script does, under a profiler, and
prints the functions that take the most time of their own. Cases are configuration/route pairs of
benchlib.CONFIGS (default: live-session's four, memory and Redis, read and write); Redis cases
start their own redis-server. A diagnostic for the figures of the other scripts, not a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats

from benchlib import REDIS_CONFIGS, build_app, redis_server, route_paths
from inprocess_requests import check, drive

DEFAULT_CASES = ["live-memory/read", "live-memory/write", "live-redis/read", "live-redis/write"]


async def profile(case: str, url: str | None, requests: int, top: int, use_pyinstrument: bool) -> str:
    config, _, route = case.partition("/")
    bench = build_app(config, url)
    cookie = await bench.seed()
    read_path, write_path = route_paths(config)
    path = read_path if route == "read" else write_path
    await check(bench.app, path, cookie, route)
    await drive(bench.app, path, cookie, requests // 10)  # warm up
    if use_pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        rate = await drive(bench.app, path, cookie, requests)
        profiler.stop()
        report = profiler.output_text(unicode=True, color=False, show_all=False)
    else:
        cprofile = cProfile.Profile()
        cprofile.enable()
        rate = await drive(bench.app, path, cookie, requests)
        cprofile.disable()
        out = io.StringIO()
        pstats.Stats(cprofile, stream=out).sort_stats("tottime").print_stats(top)
        report = out.getvalue()
    await bench.aclose()
    return f"=== {case}: {rate:,.0f} req/s under the profiler, {requests:,} requests\n{report}"


async def main_async(cases: list[str], url: str | None, requests: int, top: int, use_pyinstrument: bool) -> None:
    for case in cases:
        count = requests // 4 if case.partition("/")[0] in REDIS_CONFIGS else requests
        print(await profile(case, url, count, top, use_pyinstrument))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", nargs="+", default=DEFAULT_CASES, help="configuration/route pairs")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true", help="a call tree from pyinstrument instead")
    args = parser.parse_args()
    need_redis = any(case.partition("/")[0] in REDIS_CONFIGS for case in args.case)
    with redis_server() if need_redis else contextlib.nullcontext(None) as url:
        asyncio.run(main_async(args.case, url, args.requests, args.top, args.pyinstrument))


if __name__ == "__main__":
    main()
