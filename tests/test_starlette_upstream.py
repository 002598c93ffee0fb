"""Starlette's own session test suite, run against live_session with only the import swapped.

scripts/fetch-starlette-tests puts tests/middleware/test_session.py from the sdist of the installed
starlette into .cache/starlette-VER/; this test lays it out in tmp_path as `tests/middleware/` next to a
small conftest and `tests/types.py` of our own, swaps its one session import line, and runs it in a
separate pytest that does not see this repository's configuration.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import starlette

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / ".cache" / f"starlette-{starlette.__version__}" / "test_session.py"
ORIGINAL_IMPORT = "from starlette.middleware.sessions import Session, SessionMiddleware"
SWAPPED_IMPORT = "from live_session import LiveSessionMiddleware as SessionMiddleware, Session"
BACKENDS = ("asyncio", "trio")

CONFTEST = """\
from __future__ import annotations

import functools
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.types import TestClientFactory


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def test_client_factory(anyio_backend_name: str, anyio_backend_options: dict[str, Any]) -> TestClientFactory:
    return functools.partial(TestClient, backend=anyio_backend_name, backend_options=anyio_backend_options)
"""

TYPES = """\
from __future__ import annotations

from typing import Any, Protocol

from starlette.testclient import TestClient
from starlette.types import ASGIApp


class TestClientFactory(Protocol):
    __test__ = False  # not a test class, despite its name

    def __call__(self, app: ASGIApp, **kwargs: Any) -> TestClient: ...
"""

# Like upstream's: warnings are errors. Starlette's deprecation warning about testing with `httpx`
# (rather than `httpx2`) would be the one to ignore, exactly as upstream does; it does not fire here.
PYTEST_INI = """\
[pytest]
addopts = -rfEs --strict-config --strict-markers
xfail_strict = true
filterwarnings =
    error
"""


def _missing_upstream() -> None:
    reason = f"{UPSTREAM.relative_to(ROOT)} is missing: run scripts/fetch-starlette-tests"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: would-be skips fail)")
    pytest.skip(reason)


def _swap_import(source: str) -> str:
    lines = source.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == ORIGINAL_IMPORT]
    assert len(hits) == 1, f"expected the line {ORIGINAL_IMPORT!r} exactly once in {UPSTREAM}, found {len(hits)}"
    lines[hits[0]] = SWAPPED_IMPORT + "\n"
    swapped = "".join(lines)
    assert "starlette.middleware.sessions" not in swapped, (
        f"{UPSTREAM} still uses starlette.middleware.sessions after the swap: upstream changed its imports"
    )
    return swapped


def _write_suite(tmp_path: Path, source: str) -> Path:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    tests = tmp_path / "tests"
    middleware = tests / "middleware"
    middleware.mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    (tests / "types.py").write_text(TYPES)
    (tests / "conftest.py").write_text(CONFTEST)
    (middleware / "__init__.py").write_text("")
    test_file = middleware / "test_session.py"
    test_file.write_text(_swap_import(source))
    return test_file


@pytest.mark.timeout(300)
def test_starlette_session_suite_passes_with_live_session(tmp_path: Path) -> None:
    if not UPSTREAM.is_file():
        _missing_upstream()
    source = UPSTREAM.read_text()
    test_file = _write_suite(tmp_path, source)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"]
    cmd += ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(test_file)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    output = f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"Starlette's session tests failed against live_session:\n{output}"

    # Closing line: only passes, nothing failed, skipped, xfailed, warned or errored.
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\bin [0-9.]+s\b", line)]
    assert summary, f"no pytest summary line:\n{output}"
    assert re.fullmatch(r"=*\s*\d+ passed in [0-9.]+s( \([0-9:]+\))?\s*=*", summary[-1].strip()), (
        f"expected only passes in the summary, got {summary[-1]!r}:\n{output}"
    )

    # Every upstream test function passed, and each one that takes a backend passed on every backend.
    passed = re.findall(r"^PASSED \S+::(\w+)(?:\[(.*)\])?$", proc.stdout, flags=re.MULTILINE)
    backends_by_case: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for name, params in passed:
        tokens = params.split("-") if params else []
        backend = next((t for t in tokens if t in BACKENDS), "")
        rest = "-".join(t for t in tokens if t != backend)
        backends_by_case[(name, rest)].add(backend)
    passed_names = {name for name, _ in backends_by_case}
    upstream_names = set(re.findall(r"^def (test_\w+)\(", source, flags=re.MULTILINE))
    assert upstream_names, f"found no test functions in {UPSTREAM}"
    assert upstream_names <= passed_names, f"did not pass: {sorted(upstream_names - passed_names)}:\n{output}"
    for backend in BACKENDS:
        assert any(backend in seen for seen in backends_by_case.values()), f"nothing ran on {backend}:\n{output}"
    for (name, rest), seen in backends_by_case.items():
        assert seen == {""} or seen == set(BACKENDS), (
            f"{name}[{rest}] passed on {sorted(seen)} only, expected {list(BACKENDS)}:\n{output}"
        )
