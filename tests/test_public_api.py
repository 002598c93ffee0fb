from __future__ import annotations

import ast
from pathlib import Path

import live_session

PACKAGE = Path(live_session.__file__).parent


def test_all_is_complete_and_importable() -> None:
    public = {name for name in dir(live_session) if not name.startswith("_")}
    modules = {"testing", "pyview", "fastapi"}  # submodules appear as attributes once imported
    assert public - modules <= set(live_session.__all__)
    for name in live_session.__all__:
        assert hasattr(live_session, name), name


def test_redis_store_is_loaded_on_demand() -> None:
    from live_session._redis import RedisStore

    assert live_session.RedisStore is RedisStore


def test_errors_share_one_root() -> None:
    for name in ("SessionNotFound", "SessionConflict", "SessionTooLarge", "StoreUnavailable"):
        assert issubclass(getattr(live_session, name), live_session.SessionError)


def test_no_pickle_anywhere_in_the_package() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] in {"pickle", "cPickle", "dill", "marshal"} for name in names), path


def test_typed() -> None:
    assert (PACKAGE / "py.typed").exists()
