"""Bounded msgpack encoding, length-prefixed framing and typed field readers.

Every decoder of network input in meshnode goes through :func:`unpack` and :class:`Fields`,
so the limits and the error class are the same everywhere.
"""

from __future__ import annotations

import builtins
import math
import struct
from collections.abc import Iterator
from typing import Any

import msgpack

from protocols.errors import DecodeError, FrameTooLarge

#: Default upper bound of one frame on a stream (1 MiB).
MAX_FRAME = 1 << 20
_LENGTH = struct.Struct(">I")
#: Nesting deeper than this is refused: no message of ours nests more than a few levels,
#: and code that walks a value recursively (JSON encoding of A2A data, say) stays safe.
MAX_DEPTH = 32
#: Entries of one array or map.
MAX_CONTAINER_ITEMS = 65_536
#: Maps and arrays one message may hold: a floor, plus one per this many bytes. A container
#: costs Python 56-64 bytes even when empty (one byte of msgpack), so without a bound a
#: 1 MiB frame of empty maps decodes to ~76 MB; with it, containers add at most ~5x the
#: frame size and decoding costs O(size) memory with a small constant (bench/RESULTS.md).
CONTAINER_FLOOR = 1024
BYTES_PER_CONTAINER = 16


def pack(obj: Any) -> bytes:
    """Encode plain data (None, bool, int, float, str, bytes, list, dict) as msgpack."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


class _Bounds:
    """Counts containers and measures nesting while msgpack builds them.

    msgpack calls the hooks bottom-up, each container after its children, so a container's
    depth is one more than its deepest child's (looked up by identity, then forgotten).
    Raising from a hook aborts the decoding at once, before the next container is built.
    """

    def __init__(self, size: builtins.int) -> None:
        self.left = CONTAINER_FLOOR + size // BYTES_PER_CONTAINER
        self._depth: builtins.dict[builtins.int, builtins.int] = {}

    def _seen(self, container: Any, children: Iterator[Any]) -> None:
        self.left -= 1
        if self.left < 0:
            raise DecodeError("msgpack: too many maps and arrays for the message's size")
        depth = 1
        for child in children:
            if isinstance(child, list | dict):
                depth = max(depth, self._depth.pop(id(child), 1) + 1)
        if depth > MAX_DEPTH:
            raise DecodeError(f"msgpack: nested deeper than {MAX_DEPTH} levels")
        if depth > 1 or not isinstance(container, list | dict):
            self._depth[id(container)] = depth

    def map(self, value: builtins.dict[Any, Any]) -> builtins.dict[Any, Any]:
        self._seen(value, iter(value.values()))
        return value

    def list(self, value: builtins.list[Any]) -> builtins.list[Any]:
        self._seen(value, iter(value))
        return value


def unpack(data: bytes, *, max_size: int = MAX_FRAME) -> Any:
    """Decode one msgpack value from ``data``, refusing anything over ``max_size`` bytes.

    Strings must be UTF-8, map keys must be strings or bytes (msgpack's ``strict_map_key``),
    extension types and timestamps are refused, and trailing bytes are an error. Nesting is
    at most :data:`MAX_DEPTH` levels, a container holds at most
    :data:`MAX_CONTAINER_ITEMS` entries, and the number of containers is bounded by the
    size of ``data`` (see :data:`BYTES_PER_CONTAINER`).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise FrameTooLarge(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    bounds = _Bounds(len(data))
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_no_ext,
            timestamp=0,
            # msgpack decodes ext type -1 (timestamp) itself, without calling ext_hook:
            # refusing any extension payload is the only way to refuse timestamps too.
            # (unpackb bounds string and binary lengths by len(data) on its own.)
            max_ext_len=0,
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
            object_hook=bounds.map,
            list_hook=bounds.list,
        )
    except DecodeError:
        raise
    except (msgpack.UnpackException, ValueError, TypeError, OverflowError) as exc:
        # ExtraData, FormatError and StackError all derive from these.
        raise DecodeError(f"malformed msgpack: {exc}") from None


def encode_frame(payload: bytes, *, max_frame: int = MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its length (4 bytes, big-endian)."""
    if len(payload) > max_frame:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds the limit of {max_frame}")
    return _LENGTH.pack(len(payload)) + payload


class FrameDecoder:
    """Turns a byte stream into length-prefixed frames; holds at most one frame of buffer.

    Feed it whatever the transport delivered with :meth:`feed`, then take complete frames
    from :meth:`frames`. A declared length over ``max_frame`` raises :class:`FrameTooLarge`
    at once, before any of that frame is buffered.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._check_header()

    def _check_header(self) -> None:
        if len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self.max_frame:
                raise FrameTooLarge(
                    f"peer announced a frame of {length} bytes; the limit is {self.max_frame}"
                )

    def next_frame(self) -> bytes | None:
        """Return the next complete frame, or None if more bytes are needed."""
        if len(self._buffer) < _LENGTH.size:
            return None
        # Check here rather than after removing the previous frame, so that a good frame
        # followed by an oversized header in the same chunk is returned before the error.
        self._check_header()
        (length,) = _LENGTH.unpack_from(self._buffer)
        end = _LENGTH.size + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[_LENGTH.size : end])
        del self._buffer[:end]
        return frame

    def frames(self) -> Iterator[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)


class Fields:
    """Typed, bounded access to the fields of a decoded msgpack map.

    Each accessor raises :class:`DecodeError` naming the message and the field, so a peer's
    bad input is always reported the same way.
    """

    def __init__(self, obj: Any, what: builtins.str) -> None:
        if not isinstance(obj, dict):
            raise DecodeError(f"{what}: expected a map, got {type(obj).__name__}")
        self._obj: builtins.dict[Any, Any] = obj
        self.what = what

    def _get(self, key: builtins.str, optional: builtins.bool) -> Any:
        if key not in self._obj:
            if optional:
                return None
            raise DecodeError(f"{self.what}: missing field {key!r}")
        return self._obj[key]

    def _fail(self, key: builtins.str, expected: builtins.str, value: Any) -> DecodeError:
        return DecodeError(f"{self.what}.{key}: expected {expected}, got {type(value).__name__}")

    def str(
        self, key: builtins.str, *, max_len: builtins.int = 256, min_len: builtins.int = 0
    ) -> builtins.str:
        value = self._get(key, False)
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if not min_len <= len(value) <= max_len:
            raise DecodeError(
                f"{self.what}.{key}: length {len(value)} outside {min_len}..{max_len}"
            )
        return value

    def opt_str(self, key: builtins.str, *, max_len: builtins.int = 256) -> builtins.str | None:
        if self._get(key, True) is None:
            return None
        return self.str(key, max_len=max_len)

    def int(
        self, key: builtins.str, *, lo: builtins.int = 0, hi: builtins.int = 2**63 - 1
    ) -> builtins.int:
        value = self._get(key, False)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if not lo <= value <= hi:
            raise DecodeError(f"{self.what}.{key}: {value} outside {lo}..{hi}")
        return value

    def float(
        self, key: builtins.str, *, lo: builtins.float = -math.inf, hi: builtins.float = math.inf
    ) -> builtins.float:
        value = self._get(key, False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number", value)
        number = float(value)
        if not math.isfinite(number) or not lo <= number <= hi:
            raise DecodeError(f"{self.what}.{key}: {value!r} outside {lo}..{hi}")
        return number

    def bool(self, key: builtins.str) -> builtins.bool:
        value = self._get(key, False)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean", value)
        return value

    def opt_bool(self, key: builtins.str) -> builtins.bool | None:
        return None if self._get(key, True) is None else self.bool(key)

    def bytes(
        self, key: builtins.str, *, max_len: builtins.int = 1024, exact: builtins.int | None = None
    ) -> builtins.bytes:
        value = self._get(key, False)
        if not isinstance(value, bytes):
            raise self._fail(key, "bytes", value)
        if exact is not None and len(value) != exact:
            raise DecodeError(f"{self.what}.{key}: expected {exact} bytes, got {len(value)}")
        if len(value) > max_len:
            raise DecodeError(f"{self.what}.{key}: {len(value)} bytes exceeds {max_len}")
        return value

    def list(self, key: builtins.str, *, max_items: builtins.int = 64) -> builtins.list[Any]:
        value = self._get(key, False)
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        if len(value) > max_items:
            raise DecodeError(f"{self.what}.{key}: {len(value)} items exceeds {max_items}")
        return value

    def str_list(
        self, key: builtins.str, *, max_items: builtins.int = 64, max_len: builtins.int = 256
    ) -> builtins.list[builtins.str]:
        items = self.list(key, max_items=max_items)
        for item in items:
            if not isinstance(item, str) or len(item) > max_len:
                raise DecodeError(f"{self.what}.{key}: items must be strings of <= {max_len}")
        return items

    def map(
        self, key: builtins.str, *, max_items: builtins.int = 64
    ) -> builtins.dict[builtins.str, Any]:
        value = self._get(key, False)
        if not isinstance(value, dict):
            raise self._fail(key, "a map", value)
        if len(value) > max_items:
            raise DecodeError(f"{self.what}.{key}: {len(value)} entries exceeds {max_items}")
        if not all(isinstance(k, str) for k in value):
            raise DecodeError(f"{self.what}.{key}: keys must be strings")
        return value

    def fields(self, key: builtins.str) -> Fields:
        return Fields(self._get(key, False), f"{self.what}.{key}")
