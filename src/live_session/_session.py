"""The ``request.session`` dict: Starlette's type, plus the key-level changes a commit needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from ._values import check_key, check_value, encode

__all__ = ["ReadOnlySession", "Session"]

_CONTAINERS = (dict, list)


class Session(dict[str, Any]):
    """A ``dict`` that records which keys a request set or deleted.

    ``accessed`` and ``modified`` mean what they mean in Starlette. Values are
    checked as they are written: a value that is not JSON-compatible raises
    ``TypeError`` naming the key, and the session is left as it was.
    """

    accessed: bool = False
    modified: bool = False
    # Keys set or deleted in this request; None until the first change.
    _touched: set[str] | None = None
    # Encoded values as loaded from the store, to find changes made inside nested values.
    _baseline: Mapping[str, str] = {}

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = True
        self.modified = True

    def _touch(self, key: str) -> None:
        self.accessed = True
        self.modified = True
        if self._touched is None:
            self._touched = {key}
        else:
            self._touched.add(key)

    def __setitem__(self, key: str, value: Any) -> None:
        check_value(check_key(key), value)
        self._touch(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._touch(key)

    def clear(self) -> None:
        self.mark_modified()
        for key in list(self):
            self._touch(key)
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._touch(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self._touch(item[0])
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
            return default
        return super().__getitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        for key, value in items.items():
            check_value(check_key(key), value)
        self.mark_modified()
        for key in items:
            self._touch(key)
        super().update(items)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    def _changes(self) -> tuple[dict[str, str], list[str]]:
        """What to commit: encoded values of keys set or changed in place, and keys removed.

        Raises TypeError if a value changed in place now holds something not JSON-compatible.
        """
        baseline = self._baseline
        touched = self._touched or ()
        changes: dict[str, str] = {}
        removed: list[str] = []
        for key in touched:
            if key in self:
                value = super().__getitem__(key)
                check_value(key, value)
                text = encode(value)
                if baseline.get(key) != text:
                    changes[key] = text
            elif key in baseline:
                removed.append(key)
        if self.accessed:
            # Starlette only sees top-level writes; a cart appended to in place is a change too.
            for key, value in self.items():
                if isinstance(value, _CONTAINERS) and key not in touched:
                    check_value(key, value)
                    text = encode(value)
                    if baseline.get(key) != text:
                        changes[key] = text
        return changes, removed

    def _reset(self, data: Mapping[str, Any], baseline: Mapping[str, str]) -> None:
        """Replace the contents without recording a change (after a destroy or a commit)."""
        super().clear()
        super().update(data)
        self._baseline = baseline
        self._touched = None


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
