"""Checks shared by the msgpack and the JSON decoders: free-form values, timestamps, states."""

from __future__ import annotations

import math
from typing import Any

from protocols.a2a.model import MAX_DEPTH, MAX_TIMESTAMP, MAX_VALUES, TaskState
from protocols.errors import DecodeError

# ---- validation of free-form values ----------------------------------------------------------


def check_plain(
    value: Any, what: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
) -> None:
    """Check that ``value`` is JSON-compatible plain data that msgpack can carry too.

    None, booleans, 64-bit integers, finite floats, strings, lists and string-keyed maps,
    nested at most ``max_depth`` deep, at most ``max_values`` values in all.
    """
    budget = max_values

    def walk(v: Any, depth: int) -> None:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise DecodeError(f"{what}: more than {max_values} values")
        if v is None or isinstance(v, bool | str):
            return
        if isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                raise DecodeError(f"{what}: integer out of the 64-bit range")
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise DecodeError(f"{what}: {v!r} is not a finite number")
            return
        if depth >= max_depth:
            raise DecodeError(f"{what}: nested deeper than {max_depth}")
        if isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    raise DecodeError(f"{what}: map keys must be strings")
                walk(item, depth + 1)
        else:
            raise DecodeError(f"{what}: {type(v).__name__} is not allowed")

    walk(value, 0)


def plain_map(value: Any, what: str) -> dict[str, Any]:
    """A checked free-form map (metadata, data-part content); None means empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a map, got {type(value).__name__}")
    check_plain(value, what)
    return value


def check_timestamp(value: float, what: str) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_TIMESTAMP):
        raise DecodeError(f"{what}: timestamp {value!r} out of range")
    return value


def task_state(value: str, what: str) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        raise DecodeError(f"{what}: unknown task state {value!r}") from None
