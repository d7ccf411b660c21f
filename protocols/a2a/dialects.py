"""The two A2A JSON dialects, and the helpers shared by their encoders and decoders.

The JSON forms of the A2A model are in :mod:`protocols.a2a.json_encode` and
:mod:`protocols.a2a.json_decode`; JSON-RPC 2.0 requests, responses and SSE events in
:mod:`protocols.a2a.jsonrpc`.

Two dialects, chosen per request by the JSON-RPC method name:

* ``"1.0"`` -- A2A v1.0 as a2a-sdk 1.x speaks it: ProtoJSON of the ``lf.a2a.v1`` messages
  (camelCase names; ``ROLE_USER``; ``TASK_STATE_WORKING``; parts ``{"text"}``, ``{"data"}``,
  ``{"raw": base64}`` or ``{"url"}`` with ``filename``/``mediaType``; RFC 3339 timestamps;
  empty fields omitted). Methods ``SendMessage``, ``SendStreamingMessage``, ``GetTask``,
  ``ListTasks``, ``CancelTask``, ``GetExtendedAgentCard``.
* ``"0.3"`` -- A2A v0.3: ``kind`` discriminators, ``"user"``, ``"working"``, file parts as
  ``{"kind": "file", "file": {"bytes"|"uri", "name", "mimeType"}}``. Methods
  ``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``,
  ``agent/getAuthenticatedExtendedCard``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, cast

from protocols.a2a.model import MAX_FILE, MAX_NAME, MAX_TAGS, Role, TaskState
from protocols.a2a.validation import check_timestamp
from protocols.codec import Fields
from protocols.errors import DecodeError

Dialect: TypeAlias = Literal["1.0", "0.3"]
V1: Final = "1.0"
V03: Final = "0.3"
#: ``protocolVersion`` of the v0.3 compatibility fields of a served agent card.
V03_PROTOCOL_VERSION = "0.3.0"

_STATE_NUMBERS: dict[TaskState, int] = {
    TaskState.SUBMITTED: 1,
    TaskState.WORKING: 2,
    TaskState.COMPLETED: 3,
    TaskState.FAILED: 4,
    TaskState.CANCELED: 5,
    TaskState.INPUT_REQUIRED: 6,
    TaskState.REJECTED: 7,
    TaskState.AUTH_REQUIRED: 8,
}
STATE_NAMES_V1: dict[TaskState, str] = {
    s: "TASK_STATE_" + s.value.upper().replace("-", "_") for s in TaskState
}
_STATES_V1: dict[str | int, TaskState] = {
    **{name: s for s, name in STATE_NAMES_V1.items()},
    **{number: s for s, number in _STATE_NUMBERS.items()},
}
ROLE_NAMES_V1: dict[str, str] = {"user": "ROLE_USER", "agent": "ROLE_AGENT"}
_ROLES_V1: dict[str | int, Role] = {
    "ROLE_USER": "user",
    "ROLE_AGENT": "agent",
    1: "user",
    2: "agent",
}

# ---- small helpers -----------------------------------------------------------------------------


def _check_dialect(dialect: str) -> None:
    if dialect not in (V1, V03):
        raise ValueError(f"unknown A2A JSON dialect {dialect!r}")


def _fields(obj: Any, what: str) -> tuple[Fields, dict[str, Any]]:
    f = Fields(obj, what)
    return f, cast(dict[str, Any], obj)


def _opt_bool(f: Fields, raw: dict[str, Any], key: str, default: bool = False) -> bool:
    return default if raw.get(key) is None else f.bool(key)


_INT_TEXT = re.compile(r"-?[0-9]{1,11}")


def _opt_int(raw: dict[str, Any], key: str, what: str, *, lo: int, hi: int) -> int | None:
    """An optional integer; ProtoJSON also allows integers as decimal strings."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"{what}.{key}: {value} outside {lo}..{hi}")
    return value


def _str(f: Fields, raw: dict[str, Any], key: str, max_len: int) -> str:
    """A string that ProtoJSON leaves out when it is empty."""
    return "" if raw.get(key) is None else f.str(key, max_len=max_len)


def _list(f: Fields, raw: dict[str, Any], key: str, max_items: int) -> list[Any]:
    return [] if raw.get(key) is None else f.list(key, max_items=max_items)


def _strs(f: Fields, raw: dict[str, Any], key: str, *, max_len: int = MAX_NAME) -> tuple[str, ...]:
    if raw.get(key) is None:
        return ()
    return tuple(f.str_list(key, max_items=MAX_TAGS, max_len=max_len))


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is empty (ProtoJSON omits unset and empty fields)."""
    if value is not None and value != {} and value != [] and value is not False:
        out[key] = value


def timestamp_to_json(ts: float) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds when not whole (as ProtoJSON writes them)."""
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{dt.microsecond:06d}Z" if dt.microsecond else "Z")


def timestamp_from_json(value: Any, what: str) -> float:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise DecodeError(f"{what}: expected an RFC 3339 timestamp")
    try:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    except (ValueError, OverflowError, OSError):
        raise DecodeError(f"{what}: {value[:40]!r} is not an RFC 3339 timestamp") from None
    return check_timestamp(ts, what)


def _b64decode(value: Any, what: str) -> bytes:
    """ProtoJSON bytes: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str):
        raise DecodeError(f"{what}: expected base64 text, got {type(value).__name__}")
    if len(value) > (MAX_FILE * 4) // 3 + 4:
        raise DecodeError(f"{what}: file larger than {MAX_FILE} bytes")
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what}: invalid base64") from None
    if len(data) > MAX_FILE:
        raise DecodeError(f"{what}: file larger than {MAX_FILE} bytes")
    return data


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
