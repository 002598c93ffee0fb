"""Commands packed by hiredis's C packer: redis-py's asyncio connections pack in Python.

A commit's EVALSHA carries about twenty arguments; packing them in Python costs
more than 10 µs per call, in C about 2. redis-py lets a pool name its connection
class, so ours are the pool's own class with ``pack_command`` done by hiredis, for
the argument types hiredis packs exactly as redis-py does (str as UTF-8, bytes,
int); anything else goes to redis-py's own packer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - the redis extra brings hiredis
    _pack = None

__all__ = ["fast_packing"]

_classes: dict[type[Any], type[Any]] = {}


def fast_packing(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` packing with hiredis (itself if hiredis is missing)."""
    pack = _pack
    if pack is None:  # pragma: no cover
        return connection_class
    fast = _classes.get(connection_class)
    if fast is not None:
        return fast

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        encoder, name = self.encoder, args[0]
        utf8 = encoder.encoding == "utf-8" and encoder.encoding_errors == "strict"
        # A command name with a space ("CLIENT SETINFO") is split by redis-py's packer.
        if utf8 and type(name) is str and " " not in name:
            for arg in args:
                kind = type(arg)
                if kind is not str and kind is not bytes and kind is not int:
                    break
            else:
                return [pack(args)]
        packed: list[bytes] = connection_class.pack_command(self, *args)
        return packed

    fast = type(connection_class.__name__, (connection_class,), {"pack_command": pack_command})
    _classes[connection_class] = fast
    return fast
