"""live-session: server-side sessions for Starlette and FastAPI that live connections can write.

See README.md for the guide; every public name is listed in ``__all__``.
"""

import typing as _typing

from ._broadcast import Subscription
from ._errors import SessionConflict, SessionError, SessionNotFound, SessionTooLarge, StoreUnavailable
from ._events import SessionEventStream, session_events
from ._live import LiveSession, ensure_session, live_session
from ._memory import MemoryStore
from ._middleware import LiveSessionMiddleware
from ._session import ReadOnlySession, Session
from ._store import Record, Store
from ._stream import stream_session, update_message
from ._updates import SessionUpdate

if _typing.TYPE_CHECKING:
    from ._redis import RedisStore

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # RedisStore imports redis-py, an optional extra: load it only when asked for.
    if name == "RedisStore":
        from ._redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'live_session' has no attribute {name!r}")


__all__ = [
    "LiveSession",
    "LiveSessionMiddleware",
    "MemoryStore",
    "ReadOnlySession",
    "Record",
    "RedisStore",
    "Session",
    "SessionConflict",
    "SessionError",
    "SessionEventStream",
    "SessionNotFound",
    "SessionTooLarge",
    "SessionUpdate",
    "Store",
    "StoreUnavailable",
    "Subscription",
    "__version__",
    "ensure_session",
    "live_session",
    "session_events",
    "stream_session",
    "update_message",
]
