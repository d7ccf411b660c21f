"""Unit and property tests of protocols.codec: unpack, framing, and the typed field readers.

The contract under test: whatever bytes a peer sends, ``unpack`` either returns plain data
(None, bool, int, float, str, bytes, list, dict with str/bytes keys) or raises
``DecodeError``; nothing else ever escapes, and it never hangs (see conftest.py).
"""

from __future__ import annotations

import itertools
import math
import struct
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from protocols.codec import (
    MAX_DEPTH,
    MAX_FRAME,
    Fields,
    FrameDecoder,
    encode_frame,
    pack,
    unpack,
)
from protocols.errors import BadSignature, DecodeError, FrameTooLarge, ProtocolError, Rejected

# Generous per-example deadline: a hang detector, not a speed assertion.
FUZZ = settings(
    deadline=timedelta(seconds=2),
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=12) | st.binary(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


def assert_plain(obj: Any, depth: int = 0) -> None:
    """``obj`` holds only the types unpack promises: no ExtType, Timestamp, tuple, ..."""
    assert depth < 2000
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return
    if type(obj) is list:
        for item in obj:
            assert_plain(item, depth + 1)
        return
    assert type(obj) is dict, f"unexpected type {type(obj).__name__}"
    for key, value in obj.items():
        assert type(key) in (str, bytes), f"unexpected key type {type(key).__name__}"
        assert_plain(value, depth + 1)


def unpack_or_error(data: bytes, **kwargs: Any) -> Any:
    """unpack ``data``; a DecodeError is fine, anything else fails the calling test."""
    try:
        value = unpack(data, **kwargs)
    except DecodeError:
        return None
    assert_plain(value)
    # Whatever was accepted re-encodes to something that decodes to the same value.
    again = unpack(pack(value), max_size=2**31)
    assert again == value or _has_nan(value)
    return value


def _has_nan(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isnan(obj)
    if isinstance(obj, list):
        return any(_has_nan(x) for x in obj)
    if isinstance(obj, dict):
        return any(_has_nan(x) for x in obj.values())
    return False


def ext_bytes(code: int, payload: bytes) -> bytes:
    """Raw msgpack of an extension value (any code, including the reserved negative ones)."""
    n = len(payload)
    tag = struct.pack("b", code)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if n in fixed:
        return bytes([fixed[n]]) + tag + payload
    if n < 2**8:
        return b"\xc7" + struct.pack(">B", n) + tag + payload
    if n < 2**16:
        return b"\xc8" + struct.pack(">H", n) + tag + payload
    return b"\xc9" + struct.pack(">I", n) + tag + payload


# -- errors ---------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(FrameTooLarge, DecodeError)
    for cls in (DecodeError, BadSignature, Rejected):
        assert issubclass(cls, ProtocolError)
    assert not issubclass(BadSignature, DecodeError)
    assert not issubclass(Rejected, DecodeError)


# -- unpack: valid input ------------------------------------------------------------------


@FUZZ
@given(plain)
def test_roundtrip(value: Any) -> None:
    data = pack(value)
    assert unpack(data) == value
    assert unpack(bytearray(data)) == value
    assert unpack(memoryview(data)) == value


def test_roundtrip_keeps_types() -> None:
    value = {"s": "x", b"b": b"x", "l": [1, -1, 1.5, True, None], "f": 2.0, "big": 2**64 - 1}
    out = unpack(pack(value))
    assert out == value
    assert type(out["f"]) is float
    assert type(out["l"][3]) is bool
    assert type(out[b"b"]) is bytes


# -- unpack: hostile input ----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
@example(b"")
@example(b"\xc1")  # the one byte msgpack never uses
@example(b"\xdd\xff\xff\xff\xff")  # array32 declaring 4 billion items
@example(b"\xdf\xff\xff\xff\xff")  # map32 declaring 4 billion entries
@example(b"\xdb\xff\xff\xff\xff")  # str32 declaring 4 GiB
@example(b"\xc6\xff\xff\xff\xff")  # bin32 declaring 4 GiB
@example(b"\xc9\xff\xff\xff\xff\x05")  # ext32 declaring 4 GiB
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    unpack_or_error(data)


# Pieces of msgpack syntax: random sequences of these reach far deeper into the decoder
# than uniformly random bytes do.
TOKENS = [
    b"\x90",
    b"\x91",
    b"\x92",
    b"\x9f",
    b"\xdc\x00\x03",
    b"\xdd\x00\x00\x00\x02",
    b"\x80",
    b"\x81",
    b"\x82",
    b"\xde\x00\x02",
    b"\xdf\x00\x00\x00\x01",
    b"\xa0",
    b"\xa1a",
    b"\xa3abc",
    b"\xd9\x02\xc3\xa9",
    b"\xd9\x01\xff",
    b"\xda\x00\x01z",
    b"\xc4\x00",
    b"\xc4\x02xy",
    b"\xc5\x00\x01q",
    b"\xc6\x00\x00\x00\x00",
    b"\xc0",
    b"\xc2",
    b"\xc3",
    b"\x00",
    b"\x7f",
    b"\xe0",
    b"\xcc\xff",
    b"\xcd\xff\xff",
    b"\xcf" + b"\xff" * 8,
    b"\xd3\x80" + b"\x00" * 7,
    b"\xca\x7f\xc0\x00\x00",
    b"\xcb\x7f\xf8" + b"\x00" * 6,
    b"\xcb\x7f\xf0" + b"\x00" * 6,
    b"\xd4\x01\x00",
    b"\xd6\xff\x00\x00\x00\x01",
    b"\xd7\xff" + b"\x00" * 8,
    b"\xc7\x0c\xff" + b"\x00" * 12,
    b"\xc7\x00\x05",
    b"\xc7\x00\xff",
    b"\xc1",
]


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_msgpack_token_soup_only_raises_decode_error(tokens: list[bytes]) -> None:
    unpack_or_error(b"".join(tokens))


@FUZZ
@given(plain, st.data())
def test_every_truncation_is_refused(value: Any, data: st.DataObject) -> None:
    encoded = pack(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), label="cut")
    with pytest.raises(DecodeError):
        unpack(encoded[:cut])


def test_every_prefix_of_a_nested_message_is_refused() -> None:
    encoded = pack({"a": [1, 2.5, "three", b"four", {"five": None, "six": [True, False]}]})
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            unpack(encoded[:cut])


@FUZZ
@given(plain, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_are_refused(value: Any, trailer: bytes) -> None:
    with pytest.raises(DecodeError, match="malformed"):
        unpack(pack(value) + trailer)


@FUZZ
@given(plain)
def test_max_size_is_an_exact_bound(value: Any) -> None:
    encoded = pack(value)
    assert unpack(encoded, max_size=len(encoded)) == value
    with pytest.raises(FrameTooLarge):
        unpack(encoded, max_size=len(encoded) - 1)


def test_default_limit_is_max_frame() -> None:
    # A bin value of exactly MAX_FRAME bytes is MAX_FRAME + 5 bytes of msgpack.
    with pytest.raises(FrameTooLarge):
        unpack(pack(b"\0" * MAX_FRAME))
    fits = pack(b"\0" * (MAX_FRAME - 5))
    assert len(fits) == MAX_FRAME
    assert unpack(fits) == b"\0" * (MAX_FRAME - 5)


def test_oversized_garbage_is_refused_by_size_first() -> None:
    # Not even looked at: the size check comes before any parsing.
    with pytest.raises(FrameTooLarge):
        unpack(b"\xc1" * 101, max_size=100)


@pytest.mark.parametrize("bad", ["text", None, 42, [1, 2], {"a": 1}])
def test_non_bytes_input_is_a_decode_error(bad: Any) -> None:
    with pytest.raises(DecodeError):
        unpack(bad)


@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1k", b"\xdc\x00\x01", b"\x81\xc4\x00"])
def test_deep_nesting_is_refused_not_a_crash(opener: bytes) -> None:
    # As deep as a full 1 MiB frame allows: must be a DecodeError, not RecursionError/crash.
    depth = (MAX_FRAME - 1) // len(opener)
    with pytest.raises(DecodeError):
        unpack(opener * depth + b"\xc0")


def test_nesting_is_bounded_at_max_depth() -> None:
    assert unpack(b"\x91" * MAX_DEPTH + b"\xc0") is not None
    with pytest.raises(DecodeError, match="nested deeper"):
        unpack(b"\x91" * (MAX_DEPTH + 1) + b"\xc0")
    with pytest.raises(DecodeError, match="nested deeper"):
        unpack(b"\x81\xa1k" * (MAX_DEPTH + 1) + b"\xc0")


@pytest.mark.parametrize(
    "frame",
    [
        # A 1 MiB frame of empty maps (it decoded to ~76 MB before containers were bounded),
        # the same split into arrays short enough for the per-array limit, and lists.
        b"\xdd" + (MAX_FRAME - 5).to_bytes(4, "big") + b"\x80" * (MAX_FRAME - 5),
        b"\xdc\x00\x0f" + (b"\xdc\xff\xff" + b"\x80" * 0xFFFF) * 15,
        b"\xdc\x00\x0f" + (b"\xdc\xff\xff" + b"\x90" * 0xFFFF) * 15,
        b"\xdc\xff\xff" + (b"\x9f" + b"\x90" * 15) * 0xFFFF,
    ],
    ids=["flat-maps", "chunked-maps", "chunked-lists", "lists-of-lists"],
)
def test_container_floods_cost_memory_in_proportion_to_the_frame(frame: bytes) -> None:
    assert len(frame) <= MAX_FRAME
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=r"max_array_len|too many maps"):
            unpack(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(frame), f"{peak / 1e6:.1f} MB to refuse {len(frame) / 1e6:.1f} MB"


def test_containers_of_a_legitimate_size_decode() -> None:
    # Many small maps (A2A parts, records): one container per 16 bytes is allowed.
    batch = [{"id": "x" * 40, "meta": {"k": i}} for i in range(2000)]
    assert unpack(pack(batch)) == batch


@FUZZ
@given(st.integers(min_value=1, max_value=3000))
@example(1)
@example(100)
def test_nesting_decodes_correctly_or_is_refused(depth: int) -> None:
    data = b"\x91" * depth + b"\xc0"
    try:
        value = unpack(data)
    except DecodeError:
        assert depth > MAX_DEPTH  # modest nesting is legitimate and must decode
        return
    for _ in range(depth):
        assert type(value) is list and len(value) == 1
        value = value[0]
    assert value is None


@FUZZ
@given(
    code=st.integers(min_value=-128, max_value=127),
    payload=st.binary(max_size=300),
    wrapper=st.sampled_from([b"", b"\x91", b"\x92\x01", b"\x81\xa1k", b"\x82\xa1a\x00\xa1b"]),
)
@example(code=5, payload=b"", wrapper=b"")
@example(code=-1, payload=b"", wrapper=b"")
@example(code=127, payload=b"\x00" * 70000, wrapper=b"")
def test_extension_types_are_refused(code: int, payload: bytes, wrapper: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(wrapper + ext_bytes(code, payload))


@FUZZ
@given(
    seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    nanoseconds=st.integers(min_value=0, max_value=999_999_999),
    wrapper=st.sampled_from([b"", b"\x91", b"\x81\xa2ts"]),
)
@example(seconds=1, nanoseconds=0, wrapper=b"")  # timestamp32
@example(seconds=2**33, nanoseconds=1, wrapper=b"")  # timestamp96
@example(seconds=1, nanoseconds=5, wrapper=b"")  # timestamp64
def test_msgpack_timestamps_are_refused(seconds: int, nanoseconds: int, wrapper: bytes) -> None:
    encoded = msgpack.packb(msgpack.Timestamp(seconds, nanoseconds))
    assert encoded[1:2] == b"\xff" or encoded[2:3] == b"\xff"  # really ext type -1
    with pytest.raises(DecodeError):
        unpack(wrapper + encoded)


def test_datetime_packed_as_timestamp_is_refused() -> None:
    encoded = msgpack.packb([datetime(2024, 1, 1, tzinfo=UTC)], datetime=True)
    with pytest.raises(DecodeError):
        unpack(encoded)


@pytest.mark.parametrize(
    "key",
    [
        b"\x01",  # positive int
        b"\xff",  # negative int
        b"\xcf" + b"\xff" * 8,  # uint64
        b"\xcb" + b"\x00" * 8,  # float
        b"\xc0",  # nil
        b"\xc3",  # true
        b"\x91\x01",  # array
        b"\x90",  # empty array
        b"\x81\xa1a\x01",  # map
        b"\xd4\x01\x00",  # ext
    ],
)
def test_non_string_map_keys_are_refused(key: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(b"\x81" + key + b"\x02")


def test_string_and_bytes_map_keys_are_accepted() -> None:
    assert unpack(b"\x81\xa1a\x02") == {"a": 2}
    assert unpack(b"\x81\xc4\x01a\x02") == {b"a": 2}


def test_large_int_keyed_map_is_refused() -> None:
    data = b"\xde\xff\xff" + b"".join(msgpack.packb(k) + b"\xc0" for k in range(0xFFFF))
    with pytest.raises(DecodeError, match="map key"):
        unpack(data)


@FUZZ
@given(st.binary(min_size=1, max_size=60))
def test_invalid_utf8_strings_are_refused(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)
    encoded = b"\xd9" + bytes([len(raw)]) + raw
    with pytest.raises(DecodeError):
        unpack(encoded)
    with pytest.raises(DecodeError):
        unpack(b"\x81" + encoded + b"\x01")  # as a map key too


# -- framing -----------------------------------------------------------------------------

SMALL_FRAME = 512


@st.composite
def chunked_stream(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Random frames (empty and full-size included), and their stream cut into chunks."""
    frame = st.binary(max_size=80) | st.sampled_from([b"", b"\x00" * SMALL_FRAME])
    frames = draw(st.lists(frame, max_size=12))
    stream = b"".join(encode_frame(f, max_frame=SMALL_FRAME) for f in frames)
    cuts = sorted(draw(st.sets(st.integers(min_value=0, max_value=len(stream)), max_size=30)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    return frames, chunks


@FUZZ
@given(chunked_stream())
def test_frames_roundtrip_through_any_chunking(case: tuple[list[bytes], list[bytes]]) -> None:
    frames, chunks = case
    decoder = FrameDecoder(max_frame=SMALL_FRAME)
    out: list[bytes] = []
    fed = 0
    for chunk in chunks:
        decoder.feed(chunk)
        fed += len(chunk)
        out.extend(decoder.frames())
        consumed = sum(4 + len(f) for f in out)
        assert decoder.pending == fed - consumed
        # Never more than one (incomplete) frame plus its header is held after a drain.
        if len(out) < len(frames):
            assert decoder.pending < 4 + len(frames[len(out)])
        else:
            assert decoder.pending == 0
    assert out == frames
    assert decoder.next_frame() is None


def test_byte_by_byte_feeding() -> None:
    frames = [b"", b"a", b"hello", bytes(range(256)) * 2]
    stream = b"".join(encode_frame(f, max_frame=SMALL_FRAME) for f in frames)
    decoder = FrameDecoder(max_frame=SMALL_FRAME)
    out = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        frame = decoder.next_frame()
        if frame is not None:
            out.append(frame)
        assert decoder.pending <= 4 + SMALL_FRAME
    assert out == frames
    assert decoder.pending == 0


def test_encode_frame_format_and_limit() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(b"x" * 10, max_frame=10)[:4] == b"\x00\x00\x00\x0a"
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, max_frame=10)
    with pytest.raises(FrameTooLarge):
        encode_frame(b"\0" * (MAX_FRAME + 1))


@FUZZ
@given(st.integers(min_value=SMALL_FRAME + 1, max_value=2**32 - 1))
@example(SMALL_FRAME + 1)
@example(2**32 - 1)
def test_oversized_header_is_refused_before_any_body(length: int) -> None:
    decoder = FrameDecoder(max_frame=SMALL_FRAME)
    header = struct.pack(">I", length)
    decoder.feed(header[:3])  # an incomplete header cannot be judged yet
    assert decoder.next_frame() is None
    with pytest.raises(FrameTooLarge):
        decoder.feed(header[3:])  # refused on the header alone: no body byte was needed
    assert decoder.pending == 4


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=SMALL_FRAME)
    decoder.feed(struct.pack(">I", SMALL_FRAME))
    decoder.feed(b"z" * SMALL_FRAME)
    assert decoder.next_frame() == b"z" * SMALL_FRAME


def test_good_frames_before_an_oversized_header_are_delivered_first() -> None:
    decoder = FrameDecoder(max_frame=SMALL_FRAME)
    good = [b"one", b"two"]
    chunk = b"".join(encode_frame(f) for f in good) + struct.pack(">I", SMALL_FRAME + 1)
    decoder.feed(chunk)
    out = []
    with pytest.raises(FrameTooLarge):
        for frame in decoder.frames():
            out.append(frame)
    assert out == good
    # The error is sticky: the connection cannot continue past the bad header.
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"more")


def test_default_max_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.max_frame == MAX_FRAME
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">I", MAX_FRAME + 1))


@FUZZ
@given(st.binary(max_size=400))
def test_random_stream_only_yields_frames_or_frame_too_large(stream: bytes) -> None:
    decoder = FrameDecoder(max_frame=64)
    try:
        decoder.feed(stream)
        frames = list(decoder.frames())
    except FrameTooLarge:
        return
    assert all(len(f) <= 64 for f in frames)
    assert sum(4 + len(f) for f in frames) + decoder.pending == len(stream)


# -- Fields ------------------------------------------------------------------------------


def fields(**values: Any) -> Fields:
    return Fields(values, "msg")


@pytest.mark.parametrize("obj", [None, [], "x", b"x", 1, 1.0, True])
def test_fields_needs_a_map(obj: Any) -> None:
    with pytest.raises(DecodeError, match="msg: expected a map"):
        Fields(obj, "msg")


@pytest.mark.parametrize(
    "accessor", ["str", "int", "float", "bool", "bytes", "list", "str_list", "map", "fields"]
)
def test_missing_field_is_named(accessor: str) -> None:
    with pytest.raises(DecodeError, match=r"msg: missing field 'k'"):
        getattr(fields(other=1), accessor)("k")


def test_str() -> None:
    assert fields(k="abc").str("k") == "abc"
    assert fields(k="").str("k") == ""
    assert fields(k="x" * 256).str("k") == "x" * 256
    assert fields(k="é" * 3).str("k", max_len=3) == "é" * 3  # characters, not bytes
    with pytest.raises(DecodeError, match=r"msg\.k"):
        fields(k="x" * 257).str("k")
    with pytest.raises(DecodeError):
        fields(k="ab").str("k", min_len=3)
    assert fields(k="abc").str("k", min_len=3, max_len=3) == "abc"
    for bad in (b"abc", 1, None, ["a"], True, 1.5, {"a": 1}):
        with pytest.raises(DecodeError, match=r"msg\.k: expected a string"):
            fields(k=bad).str("k")


def test_opt_str() -> None:
    assert fields().opt_str("k") is None
    assert fields(k=None).opt_str("k") is None
    assert fields(k="v").opt_str("k") == "v"
    with pytest.raises(DecodeError):
        fields(k="x" * 11).opt_str("k", max_len=10)
    for bad in (b"v", 0, False, []):
        with pytest.raises(DecodeError):
            fields(k=bad).opt_str("k")


def test_int() -> None:
    assert fields(k=0).int("k") == 0
    assert fields(k=2**63 - 1).int("k") == 2**63 - 1
    assert fields(k=-5).int("k", lo=-5, hi=5) == -5
    assert fields(k=5).int("k", lo=-5, hi=5) == 5
    for out_of_range in (-1, 2**63, 2**64 - 1):
        with pytest.raises(DecodeError, match="outside"):
            fields(k=out_of_range).int("k")
    with pytest.raises(DecodeError):
        fields(k=6).int("k", lo=-5, hi=5)
    # bool is an int subclass in Python, but not an integer on the wire.
    for bad in (True, False, 1.0, 2.5, "1", b"1", None, [1]):
        with pytest.raises(DecodeError, match="expected an integer"):
            fields(k=bad).int("k", lo=-10, hi=10)


def test_int_from_the_wire() -> None:
    decoded = unpack(pack({"big": 2**64 - 1, "t": True, "neg": -(2**63)}))
    f = Fields(decoded, "wire")
    with pytest.raises(DecodeError):
        f.int("big")
    with pytest.raises(DecodeError):
        f.int("t")
    assert f.int("neg", lo=-(2**63)) == -(2**63)


def test_float() -> None:
    value = fields(k=3).float("k")
    assert value == 3.0 and type(value) is float  # ints are accepted as numbers
    assert fields(k=-1e300).float("k") == -1e300
    assert fields(k=1.0).float("k", lo=1.0, hi=1.0) == 1.0
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(DecodeError):
            fields(k=bad).float("k")  # even with unlimited bounds
    with pytest.raises(DecodeError):
        fields(k=0.999).float("k", lo=1.0)
    with pytest.raises(DecodeError):
        fields(k=2).float("k", hi=1.5)
    for bad in (True, False, "1.0", b"", None, [1.0]):
        with pytest.raises(DecodeError, match="expected a number"):
            fields(k=bad).float("k")


def test_float_nan_from_the_wire() -> None:
    nan32 = b"\x81\xa1k\xca\x7f\xc0\x00\x00"
    with pytest.raises(DecodeError):
        Fields(unpack(nan32), "wire").float("k")


def test_bool() -> None:
    assert fields(k=True).bool("k") is True
    assert fields(k=False).bool("k") is False
    for bad in (0, 1, "true", None, b"\x01", 1.0):
        with pytest.raises(DecodeError, match="expected a boolean"):
            fields(k=bad).bool("k")


def test_bytes() -> None:
    assert fields(k=b"").bytes("k") == b""
    assert fields(k=b"x" * 1024).bytes("k") == b"x" * 1024
    with pytest.raises(DecodeError):
        fields(k=b"x" * 1025).bytes("k")
    assert fields(k=b"x" * 16).bytes("k", exact=16) == b"x" * 16
    for n in (15, 17, 0):
        with pytest.raises(DecodeError, match="expected 16 bytes"):
            fields(k=b"x" * n).bytes("k", exact=16)
    with pytest.raises(DecodeError):
        fields(k=b"x" * 64).bytes("k", exact=64, max_len=32)
    for bad in ("x", bytearray(b"x"), 1, None, [1]):
        with pytest.raises(DecodeError, match="expected bytes"):
            fields(k=bad).bytes("k")


def test_list() -> None:
    assert fields(k=[]).list("k") == []
    assert fields(k=[1] * 64).list("k") == [1] * 64
    with pytest.raises(DecodeError, match="65 items"):
        fields(k=[1] * 65).list("k")
    assert fields(k=[1, 2]).list("k", max_items=2) == [1, 2]
    for bad in ((1,), {"a": 1}, "ab", b"ab", None):
        with pytest.raises(DecodeError, match="expected a list"):
            fields(k=bad).list("k")


def test_str_list() -> None:
    assert fields(k=["a", ""]).str_list("k") == ["a", ""]
    assert fields(k=["xy"]).str_list("k", max_len=2) == ["xy"]
    for bad in (["a", 1], ["a", b"b"], [None], [["a"]], ["xyz"]):
        with pytest.raises(DecodeError, match="items must be strings"):
            fields(k=bad).str_list("k", max_len=2)
    with pytest.raises(DecodeError):
        fields(k=["a"] * 4).str_list("k", max_items=3)


def test_map() -> None:
    assert fields(k={}).map("k") == {}
    assert fields(k={"a": 1}).map("k") == {"a": 1}
    with pytest.raises(DecodeError, match="keys must be strings"):
        fields(k={b"a": 1}).map("k")
    with pytest.raises(DecodeError, match="3 entries"):
        fields(k={"a": 1, "b": 2, "c": 3}).map("k", max_items=2)
    for bad in ([], "a", None, 1):
        with pytest.raises(DecodeError, match="expected a map"):
            fields(k=bad).map("k")


def test_nested_fields_name_their_path() -> None:
    f = fields(inner={"x": "nope"})
    with pytest.raises(DecodeError, match=r"msg\.inner\.x: expected an integer"):
        f.fields("inner").int("x")
    with pytest.raises(DecodeError, match=r"msg\.k: expected a map"):
        fields(k=[1]).fields("k")


# An independent oracle for each accessor, checked against random values and bounds.


@FUZZ
@given(value=plain, lo=st.integers(-1000, 1000), span=st.integers(0, 2000))
def test_int_oracle(value: Any, lo: int, span: int) -> None:
    hi = lo + span
    ok = type(value) is int and lo <= value <= hi
    try:
        out = fields(k=value).int("k", lo=lo, hi=hi)
    except DecodeError:
        assert not ok
    else:
        assert ok and out == value and type(out) is int


@FUZZ
@given(value=plain | st.floats(), lo=st.floats(-1e6, 1e6), span=st.floats(0, 1e6))
def test_float_oracle(value: Any, lo: float, span: float) -> None:
    hi = lo + span
    ok = type(value) in (int, float) and math.isfinite(value) and lo <= value <= hi
    try:
        out = fields(k=value).float("k", lo=lo, hi=hi)
    except DecodeError:
        assert not ok
    else:
        assert ok and out == value and type(out) is float


@FUZZ
@given(value=plain, min_len=st.integers(0, 10), max_len=st.integers(0, 40))
def test_str_oracle(value: Any, min_len: int, max_len: int) -> None:
    ok = type(value) is str and min_len <= len(value) <= max_len
    try:
        out = fields(k=value).str("k", min_len=min_len, max_len=max_len)
    except DecodeError:
        assert not ok
    else:
        assert ok and out == value


@FUZZ
@given(value=plain, max_len=st.integers(0, 40), exact=st.none() | st.integers(0, 40))
def test_bytes_oracle(value: Any, max_len: int, exact: int | None) -> None:
    ok = type(value) is bytes and len(value) <= max_len and (exact is None or len(value) == exact)
    try:
        out = fields(k=value).bytes("k", max_len=max_len, exact=exact)
    except DecodeError:
        assert not ok
    else:
        assert ok and out == value


@FUZZ
@given(value=plain, max_items=st.integers(0, 6), max_len=st.integers(0, 40))
def test_collection_oracles(value: Any, max_items: int, max_len: int) -> None:
    f = fields(k=value)
    is_list = type(value) is list and len(value) <= max_items
    is_str_list = is_list and all(type(x) is str and len(x) <= max_len for x in value)
    is_map = (
        type(value) is dict and len(value) <= max_items and all(type(key) is str for key in value)
    )
    for call, ok in (
        (lambda: f.list("k", max_items=max_items), is_list),
        (lambda: f.str_list("k", max_items=max_items, max_len=max_len), is_str_list),
        (lambda: f.map("k", max_items=max_items), is_map),
        (lambda: f.bool("k"), type(value) is bool),
    ):
        try:
            out = call()
        except DecodeError:
            assert not ok
        else:
            assert ok and out == value
