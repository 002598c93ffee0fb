"""Session values: JSON-compatible only, checked where they are written."""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_key", "check_value", "decode", "decode_all", "encode", "encode_all", "encoded_size"]

# Deeper than any real session value; also how a reference cycle is caught.
_MAX_DEPTH = 64

# Compact, strict JSON (no NaN or Infinity).
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder()
_decode = _decoder.decode
# The (C) scanner that decode() calls, without decode()'s two whitespace regex passes.
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_encode_str = json.encoder.encode_basestring_ascii
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C accelerator


def encode(value: Any) -> str:
    """``value`` as compact JSON: what ``_encoder.encode`` returns, with less overhead per call."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)  # what the encoder does for an int
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if (kind is dict or kind is list) and _make_c_encoder is not None:
        # What JSONEncoder.iterencode does for a one-shot encode, without its Python layers.
        chunks = _make_c_encoder({}, _encoder.default, _encode_str, None, ":", ",", False, False, False)(value, 0)
        return "".join(chunks)
    return _encoder.encode(value)


def decode(text: str) -> Any:
    """The value of one JSON text; JSONDecodeError if it is not exactly one."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end == len(text):
        return value
    return _decode(text)  # surrounding whitespace, or the error json would raise


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
