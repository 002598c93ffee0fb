"""Errors raised by live-session.

Every error the library raises on purpose derives from one root, so an app can
catch them all in one place::

    SessionError
    ├── SessionNotFound    the connection has no session, or it was destroyed,
    │                      regenerated or expired while the connection was open
    ├── SessionConflict    modify() could not commit within its retry budget
    ├── SessionTooLarge    a write would make the stored session exceed its size limit
    └── StoreUnavailable   the store cannot be reached (a network store that is down)

Bad values are ordinary ``TypeError`` s: a session value that is not
JSON-compatible, a non-string key, or a write to the read-only ``websocket.session``.
"""

from __future__ import annotations


class SessionError(Exception):
    """The root of every live-session error."""


class SessionNotFound(SessionError):
    """The connection has no session to read, write or subscribe to.

    Either no session existed when the connection was made (call
    ``await ensure_session(request)`` when rendering a live page), or it was
    destroyed, regenerated or expired since.
    """


class SessionConflict(SessionError):
    """``modify()`` lost the compare-and-set race more times than its retry budget allows."""


class SessionTooLarge(SessionError):
    """A write would make the serialised session larger than the store's ``max_session_size``."""


class StoreUnavailable(SessionError):
    """The session store cannot be reached; nothing was read or written."""
