"""Per-request cost in CPU instructions: the in-process cases counted by callgrind, free of timing noise.

Run: .venv/bin/python benchmarks/instructions.py [--requests 1000] [--no-redis] [--case live-redis/read ...]

Needs valgrind (Debian: apt-get install -y valgrind). On 2 shared cores the timed ratios of
inprocess_requests.py move by 10 % from run to run; an instruction count hardly moves (hash
randomisation is off; two runs of the same code agree to 0.2 %, to 2 % with Redis), so it shows
whether a change made a request cheaper, and by how much, when the timed figures cannot. It is a
proxy, not the target itself: time is not only instructions (cache misses, branch mispredictions,
how much of the work runs in C), and its ratios differ from the timed ones by up to about 15 %,
either way.

The app and configurations are those of inprocess_requests.py; for Redis, only the app's own
instructions count (the client side: what a busy server spends per request), not the wait for
Redis. One Python process under callgrind drives every case in turn, warmed up first; callgrind
writes out its counters each time getppid() is entered (--dump-before=getppid), and the script
calls it just before and just after each case's measured requests, so each case's count is one
dump of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import (
    REDIS_CONFIGS,
    BenchApp,
    PartResult,
    build_app,
    case_name,
    machine,
    redis_server,
    request_cases,
    request_report,
    table,
)
from inprocess_requests import check, drive

REQUESTS = 1000
WARM_UP = 200
COMMAND = ".venv/bin/python benchmarks/instructions.py"
MARK = "getppid"  # the function whose entry makes callgrind write out its counters


async def drive_marked(requests: int, redis_url: str | None, only: list[str]) -> list[str]:
    """In the process under callgrind: every case, each measured between two calls of os.getppid()."""
    apps: dict[str, BenchApp] = {}
    cookies: dict[str, str | None] = {}
    names = []
    for config, route in request_cases(with_redis=redis_url is not None):
        if only and case_name(config, route) not in only:
            continue
        if config not in apps:
            apps[config] = build_app(config, redis_url)
            cookies[config] = await apps[config].seed()
        bench, cookie = apps[config], cookies[config]
        path = bench.read_path if route == "read" else bench.write_path
        await check(bench.app, path, cookie, route)
        await drive(bench.app, path, cookie, WARM_UP)
        os.getppid()  # the counters from the start, or since the last case, are written out: not counted
        await drive(bench.app, path, cookie, requests)
        os.getppid()  # this case's counters are written out
        names.append(case_name(config, route))
    for bench in apps.values():
        await bench.aclose()
    return names


def count(requests: int, with_redis: bool, only: list[str]) -> dict[str, float]:
    """Instructions per request of each case, from one run under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("instructions.py needs valgrind (Debian: apt-get install -y valgrind)")
    with (
        redis_server() if with_redis else contextlib.nullcontext(None) as url,
        tempfile.TemporaryDirectory() as directory,
    ):
        out = Path(directory) / "callgrind.out"
        command = [
            valgrind,
            "--tool=callgrind",
            f"--dump-before={MARK}",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            str(requests),
            *only,
        ]
        if url is not None:
            command += ["--redis", url]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"the run under callgrind failed:\n{done.stderr[-3000:]}")
        names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
        dumps = sorted(Path(directory).glob("callgrind.out.*"), key=lambda path: int(path.suffix[1:]))
        totals = [_total(path) for path in dumps]
    if len(totals) < 2 * len(names):
        raise RuntimeError(f"expected {2 * len(names)} dumps from callgrind, found {len(totals)}")
    # Dump 2k holds what ran before case k was measured; dump 2k + 1, case k's requests.
    return {name: totals[2 * index + 1] / requests for index, name in enumerate(names)}


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def run(*, requests: int = REQUESTS, with_redis: bool = True, only: list[str] | None = None) -> PartResult:
    instructions = count(requests, with_redis, only or [])
    rows = []
    for name, value in instructions.items():
        config, _, route = name.partition("/")
        ours = instructions.get(case_name("live-redis" if config in REDIS_CONFIGS else "live-memory", route or "read"))
        compare = "" if config.startswith("live-") or ours is None else f"{value / ours:.2f}x"
        rows.append((name, f"{value / 1000:,.1f}k", compare))
    # The goals are ratios of throughput; one request at a time, that is the inverse ratio of cost.
    _, goals = request_report({name: 1 / value for name, value in instructions.items()}, "instructions")
    goal_rows = [(goal.what.removeprefix("instructions: "), goal.goal, goal.measured) for goal in goals]
    markdown = (
        "Needs valgrind (Debian: `apt-get install -y valgrind`). "
        f"The in-process app of the section above, every configuration, {requests:,} requests per case after "
        f"{WARM_UP} to warm up, counted by callgrind (valgrind) in one run with hash randomisation off: two runs "
        "of the same code on the same Python agree to 0.2 % (the Redis rows to about 2 %: how often the event "
        "loop polls before a reply arrives depends on timing). Each row is compared with live-session's row of "
        "the same store and route (a bare route, `none` or `floor`, with its read). For Redis, only the app's "
        "own instructions count (the client side; waiting for Redis costs none): what a busy server spends "
        "per request.\n\n"
        + table(["case", "instructions per request", "this ÷ live-session"], rows, text_columns=1)
        + "\n\nThe goals of issue 6 in instructions instead of time: a check free of the timing noise, not the "
        "targets themselves (time is not only instructions: the in-process timed ratios of the memory store "
        "have come out up to about 15 % away, either way; and a Redis request's time is mostly the round "
        "trip's wait, which this does not count).\n\n" + table(["ratio", "goal", "in instructions"], goal_rows)
    )
    title = "Per-request cost in CPU instructions (callgrind): the in-process ratios without the noise"
    return PartResult("instructions", title, COMMAND, markdown, [], {"instructions": instructions})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help="measured requests per case")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis configurations")
    parser.add_argument("--case", nargs="+", default=[], help="only these cases, e.g. live-redis/read (default: all)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("child_cases", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(drive_marked(args.child, args.redis, args.child_cases))))
        return
    result = run(requests=args.requests, with_redis=not args.no_redis, only=args.case)
    print(f"Machine: {machine()}\n")
    print(result.markdown, end="\n\n")


if __name__ == "__main__":
    main()
