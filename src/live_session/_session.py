"""The ``request.session`` dict: Starlette's type, plus the key-level changes a commit needs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._values import check_key, check_value, decode, encode

if TYPE_CHECKING:
    from ._live import Connection

__all__ = ["ReadOnlySession", "Session"]

_CONTAINERS = (dict, list)
_SCALARS = frozenset({str, int, bool, type(None)})  # exact types: always JSON-compatible
_IMMUTABLE = _SCALARS | {float}
_MISSING: Any = object()
_dict_get = dict.get
_dict_setitem = dict.__setitem__


class Session(dict[str, Any]):
    """A ``dict`` that records which keys a request set, deleted or read.

    ``accessed`` and ``modified`` mean what they mean in Starlette. Values are
    checked as they are written: a value that is not JSON-compatible raises
    ``TypeError`` naming the key, and the session is left as it was. A list or
    dict that was read may have been changed in place; at commit only those are
    compared with what was loaded, so a request that reads ``user`` pays nothing
    for a large ``cart``.

    A session loaded from a record that carries decoded values (``Record.decoded``)
    starts out holding those shared values, so loading decodes nothing. A list or
    dict among them is replaced by a copy of its own the first time it is handed
    out, by ``session[key]``, ``get``, ``pop``, ``items()``, ``values()`` and the
    rest, so the app never changes what other requests share. Code that bypasses
    the dict's methods (``dict.get(session, key)``, a C extension walking the dict)
    sees the right values but must not change them.
    """

    accessed: bool = False
    modified: bool = False
    # Keys set or deleted in this request; None until the first change.
    _touched: set[str] | None = None
    # Keys whose values were handed out (they may be changed in place); None until the first.
    _read: set[str] | None = None
    # Every value was handed out (items(), values(), copy(), ...).
    _read_all: bool = False
    # Encoded values as loaded from the store, to find changes made inside nested values.
    _baseline: Mapping[str, str] = {}
    # Decoded values shared with the loaded record (Record.decoded): a list or dict among
    # them is decoded afresh from _baseline before it is handed out.
    _shared: Mapping[str, Any] = {}
    # Re-seeded by a live write during the request (_reset): what it was loaded with is gone.
    _reseeded: bool = False
    # The connection this session belongs to (set by the middleware), for ``live_session_of``.
    _connection: Connection | None = None

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = True
        self.modified = True

    # -- reads that hand out values --

    def _saw(self, key: str) -> None:
        if self._read is None:
            self._read = {key}
        else:
            self._read.add(key)

    def _own(self, key: str) -> Any:
        """A copy of the shared list or dict under ``key``, put in its place."""
        value = decode(self._baseline[key])
        dict.__setitem__(self, key, value)
        return value

    def _own_all(self) -> None:
        """Before every value is handed out: no list or dict in the session is shared any more."""
        self._read_all = True
        shared = self._shared
        if shared:
            for key, value in shared.items():
                if isinstance(value, _CONTAINERS) and dict.get(self, key) is value:
                    self._own(key)
            self._shared = {}

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if isinstance(value, _CONTAINERS):
            if value is self._shared.get(key):
                value = self._own(key)
            self._saw(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = _dict_get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, _CONTAINERS):
            if value is self._shared.get(key):
                value = self._own(key)
            self._saw(key)
        return value

    def items(self) -> Any:
        self._own_all()
        return super().items()

    def values(self) -> Any:
        self._own_all()
        return super().values()

    def copy(self) -> dict[str, Any]:
        self._own_all()
        return dict(super().items())

    def __or__(self, other: Any) -> Any:
        self._own_all()
        return super().__or__(other)

    def __iter__(self) -> Iterator[str]:
        # Overriding it makes dict(session) and {**session} fetch values through __getitem__.
        return super().__iter__()

    # -- writes --

    def _touch(self, key: str) -> None:
        self.accessed = True
        self.modified = True
        if self._touched is None:
            self._touched = {key}
        else:
            self._touched.add(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not (type(key) is str and type(value) in _SCALARS):  # those need no check
            check_value(check_key(key), value)
        # _touch(key), inlined: the most common write of all.
        self.accessed = self.modified = True
        touched = self._touched
        if touched is None:
            self._touched = {key}
        else:
            touched.add(key)
        _dict_setitem(self, key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._touch(key)

    def clear(self) -> None:
        self.mark_modified()
        for key in list(self):
            self._touch(key)
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        self._touch(key)
        return self._unshared(key, super().pop(key))

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._touch(key)
        return key, self._unshared(key, value)

    def _unshared(self, key: str, value: Any) -> Any:
        """``value``, just taken out of the session, or a copy of it if it is a shared list or dict."""
        if isinstance(value, _CONTAINERS) and value is self._shared.get(key):
            return decode(self._baseline[key])
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
            return default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        for key, value in items.items():
            check_value(check_key(key), value)
        self.mark_modified()
        for key in items:
            self._touch(key)
        super().update(items)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override]
        self.update(other)
        return self

    # -- for the middleware --

    def _changes(self) -> tuple[dict[str, str], list[str]]:
        """What to commit: encoded values of keys set or changed in place, and keys removed.

        Raises TypeError if a value changed in place now holds something not JSON-compatible.
        """
        baseline = self._baseline
        touched = self._touched or ()
        changes: dict[str, str] = {}
        removed: list[str] = []
        get = dict.get
        for key in touched:
            value = get(self, key, _MISSING)
            if value is not _MISSING:
                # Set by this request: committed even if equal to what it loaded, since a live
                # writer may have changed it since, and the request wrote last.
                if isinstance(value, _CONTAINERS):  # scalars were checked when set
                    changes[key] = _encode_checked(key, value)
                    check_value(key, value)
                else:
                    changes[key] = encode(value)
            elif key in baseline:
                removed.append(key)
        # Starlette only sees top-level writes; a cart appended to in place is a change too.
        if self._read_all or self._read:
            for key in dict.keys(self) if self._read_all else self._read or ():
                if key not in touched:
                    value = get(self, key)
                    if isinstance(value, _CONTAINERS):
                        self._compare(key, value, baseline, changes)
        return changes, removed

    @staticmethod
    def _compare(key: str, value: Any, baseline: Mapping[str, str], changes: dict[str, str]) -> None:
        text = _encode_checked(key, value)
        if baseline.get(key) != text:
            check_value(key, value)  # also refuses what JSON would silently convert (tuples, int keys)
            changes[key] = text

    def _unchanged_values(self, loaded: Mapping[str, Any], stored: Mapping[str, str]) -> dict[str, Any] | None:
        """``stored`` (the session's data after this request) decoded, if this session holds every value untouched.

        ``loaded`` holds the values this session was built from (decoded from ``_baseline``, or
        shared from the loaded record). A string, number, bool or None counts if it encodes to the
        stored text (the app may have set it again after the commit, in a background task: that
        write was never stored). A list or dict counts only if the app never got hold of it (read,
        set, popped): it may still change it. The session must hold no key that ``stored`` lacks.
        """
        if self._read_all or self._reseeded:
            return None
        read = self._read or ()
        touched = self._touched or ()
        baseline = self._baseline
        values = {}
        for key, text in stored.items():
            value = _dict_get(self, key, _MISSING)
            if type(value) in _IMMUTABLE:
                if encode(value) != text:
                    return None
            elif key in read or key in touched or value is not loaded.get(key) or baseline.get(key) != text:
                return None
            values[key] = value
        if dict.__len__(self) != len(values):
            return None  # it holds a key the stored session no longer has (deleted by a live write, say)
        # Code that still holds this session (a task the app left running) gets copies from now on:
        # every list or dict in values came from loaded, whose text is the stored one.
        self._shared = values
        return values

    def _reset(self, data: Mapping[str, Any], baseline: Mapping[str, str]) -> None:
        """Replace the contents without recording a change (after a destroy or a commit)."""
        dict.clear(self)
        dict.update(self, data)
        self._baseline = baseline
        self._shared = {}
        self._reseeded = True
        self._touched = self._read = None
        self._read_all = False


def _encode_checked(key: str, value: Any) -> str:
    try:
        return encode(value)
    except (TypeError, ValueError):
        check_value(key, value)  # raises, naming the key and the place
        raise


def _read_only(*args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(
        "websocket.session is the session as it was at the handshake and is read-only; "
        "write through the live handle instead: await live_session(websocket).put(key, value)"
    )


class ReadOnlySession(Session):
    """``websocket.session``: a snapshot that refuses writes, so no stale copy is ever written back."""

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    clear = _read_only
    pop = _read_only
    popitem = _read_only
    setdefault = _read_only
    update = _read_only
