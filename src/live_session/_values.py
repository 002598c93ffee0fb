"""Session values: JSON-compatible only, checked where they are written."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["check_key", "check_value", "decode", "decode_all", "encode", "encode_all", "encoded_size"]

# Deeper than any real session value; also how a reference cycle is caught.
_MAX_DEPTH = 64

# One encoder, built once: compact, strict JSON (no NaN or Infinity).
encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
decode = json.JSONDecoder().decode


def check_key(key: object) -> str:
    if type(key) is not str:
        raise TypeError(f"session keys must be str, got {type(key).__name__} {key!r}")
    return key


def check_value(key: str, value: object) -> None:
    """Raise a TypeError naming ``key`` (and where inside it) if ``value`` is not JSON-compatible.

    Allowed: dict with str keys, list, str, int, float (finite), bool, None.
    Tuples and sets are refused rather than silently turned into lists, so what
    is read back is always what was written.
    """
    problem = _find_problem(value, 0)
    if problem is not None:
        where, what = problem
        raise TypeError(
            f"session value for key {key!r} is not JSON-compatible: {key!r}{where} {what}; "
            "use dict (str keys), list, str, int, float, bool or None"
        )


def _find_problem(value: object, depth: int) -> tuple[str, str] | None:
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", f"is {value!r}, which JSON cannot hold")
    if depth >= _MAX_DEPTH:
        return ("", f"is nested more than {_MAX_DEPTH} levels deep (or contains itself)")
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _find_problem(item, depth + 1)
            if problem is not None:
                return (f"[{index}]{problem[0]}", problem[1])
        return None
    if isinstance(value, dict):
        for name, item in value.items():
            if type(name) is not str:
                return ("", f"has a {type(name).__name__} dict key {name!r} (JSON keys are strings)")
            problem = _find_problem(item, depth + 1)
            if problem is not None:
                return (f"[{name!r}]{problem[0]}", problem[1])
        return None
    return ("", f"is a {type(value).__name__}")


def encoded_size(data: Mapping[str, str]) -> int:
    """Bytes of the session as one JSON object: UTF-8 keys (quoted) and their encoded values.

    Every store counts this way (the Redis store in Lua), so one limit means the same everywhere.
    """
    if not data:
        return 2
    return sum(len(key.encode("utf-8")) + len(text) + 4 for key, text in data.items()) + 1


def decode_all(data: Mapping[str, str]) -> dict[str, Any]:
    return {key: decode(text) for key, text in data.items()}


def encode_all(data: Mapping[str, Any]) -> dict[str, str]:
    """Every value checked (TypeError naming the key) and encoded, for a session stored whole."""
    encoded = {}
    for key, value in data.items():
        check_value(check_key(key), value)
        encoded[key] = encode(value)
    return encoded
