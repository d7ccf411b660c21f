"""The /meshnode/a2a/1.0.0 frames: round trips, exact limits, and fuzzed input."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.a2a import (
    A2A_PROTOCOL,
    INVALID_PARAMS,
    MAX_FILE,
    MAX_HISTORY,
    MAX_PARTS,
    MAX_SKILLS,
    MAX_TEXT,
    METHOD_NOT_FOUND,
    TASK_NOT_FOUND,
    WIRE_VERSION,
    A2AError,
    AgentCard,
    Artifact,
    End,
    ErrorReply,
    Event,
    FilePart,
    GetAgentCard,
    GetTask,
    Message,
    Operation,
    Result,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    card_from_wire,
    card_to_wire,
    decode_request,
    decode_response,
    encode_end,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    from_wire,
    to_wire,
)
from protocols.codec import FrameDecoder, encode_frame, pack, unpack
from protocols.errors import DecodeError
from tests.protocols.a2a.helpers import (
    CARD,
    NOW,
    artifacts,
    cards,
    ids,
    messages,
    operations,
    plain,
    stream_events,
    tasks,
)

FUZZ = settings(
    deadline=timedelta(seconds=2), max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
ALLOWED = (DecodeError, A2AError)

results = tasks | messages | cards | st.lists(tasks, max_size=3).map(tuple)


def test_protocol_id() -> None:
    assert A2A_PROTOCOL == "/meshnode/a2a/1.0.0"


@FUZZ
@given(ids, operations)
def test_request_round_trip(request_id: str, op: Operation) -> None:
    payload = encode_request(request_id, op)
    assert decode_request(payload) == (request_id, op)
    # and through the length-prefixed framing
    decoder = FrameDecoder()
    decoder.feed(encode_frame(payload))
    assert list(decoder.frames()) == [payload]


def test_get_agent_card_request() -> None:
    assert decode_request(encode_request("r", GetAgentCard())) == ("r", GetAgentCard())


@FUZZ
@given(ids, results)
def test_result_round_trip(request_id: str, value: Any) -> None:
    assert decode_response(encode_result(request_id, value)) == Result(request_id, value)


@FUZZ
@given(ids, stream_events)
def test_event_round_trip(request_id: str, event: Any) -> None:
    assert decode_response(encode_event(request_id, event)) == Event(request_id, event)


@given(ids, st.integers(-(2**31), 2**31 - 1), st.text(max_size=50))
def test_error_and_end_round_trip(request_id: str, code: int, message: str) -> None:
    assert decode_response(encode_error(request_id, code, message)) == ErrorReply(
        request_id, code, message
    )
    assert decode_response(encode_end(request_id)) == End(request_id)


def test_long_error_messages_are_cut() -> None:
    reply = decode_response(encode_error("r", TASK_NOT_FOUND, "x" * 10_000))
    assert isinstance(reply, ErrorReply) and len(reply.message) == 4096


@FUZZ
@given(tasks | messages | cards | artifacts | stream_events)
def test_to_wire_from_wire(obj: Any) -> None:
    body = to_wire(obj)
    assert unpack(pack(body)) == body  # plain msgpack data
    assert from_wire(type(obj), unpack(pack(body))) == obj


@FUZZ
@given(cards)
def test_card_wire_round_trip(card: AgentCard) -> None:
    assert card_from_wire(unpack(pack(card_to_wire(card)))) == card


def test_card_fits_a_presence_announcement() -> None:
    assert len(pack(card_to_wire(CARD))) < 1024


def test_unknown_types_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        to_wire("task")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        from_wire(str, {})
    with pytest.raises(TypeError):
        encode_result("r", "task")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_event("r", CARD)  # type: ignore[arg-type]


# ---- refusals -----------------------------------------------------------------------------------


def payload(**fields: Any) -> bytes:
    return pack({"v": WIRE_VERSION, "id": "r1", **fields})


def task_body(**changes: Any) -> dict[str, Any]:
    body = to_wire(Task("t", "c", TaskStatus(TaskState.WORKING, None, NOW)))
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\xc1",
        pack([1, 2]),
        pack({"v": 2, "type": "request", "id": "r", "op": "get_task", "body": {}}),
        pack({"v": True, "type": "request", "id": "r", "op": "get_task", "body": {}}),
        payload(type="result", op="get_task", body={"task_id": "t"}),
        payload(type="request", op="get_task", body={"task_id": ""}),
        payload(type="request", op="get_task", body={"task_id": "t", "history_length": -1}),
        payload(type="request", op="list_tasks", body={"page_size": 0}),
        payload(type="request", op="send_message", body={"message": {}, "blocking": True}),
        pack({"v": WIRE_VERSION, "type": "request", "id": "", "op": "get_agent_card", "body": {}}),
        pack({"v": WIRE_VERSION, "type": "request", "id": "x" * 257, "op": "get_agent_card"}),
    ],
)
def test_bad_requests_are_refused(bad: bytes) -> None:
    with pytest.raises(ALLOWED):
        decode_request(bad)


def test_a_bad_operation_still_names_its_request() -> None:
    with pytest.raises(A2AError) as info:
        decode_request(payload(type="request", op="teleport", body={}))
    assert (info.value.code, info.value.request_id) == (METHOD_NOT_FOUND, "r1")
    with pytest.raises(A2AError) as info:
        decode_request(payload(type="request", op="get_task", body={"task_id": 7}))
    assert (info.value.code, info.value.request_id) == (INVALID_PARAMS, "r1")


@pytest.mark.parametrize(
    "bad",
    [
        payload(type="nope"),
        payload(type="result", kind="tasks", body=[task_body()] * 101),
        payload(type="result", kind="spaceship", body={}),
        payload(type="result", kind="task", body=task_body(status={"state": "paused"})),
        payload(type="result", kind="task", body=task_body(history=[{}] * (MAX_HISTORY + 1))),
        payload(type="result", kind="task", body=task_body(metadata={"k": float("nan")})),
        payload(type="result", kind="task", body=task_body(metadata={"k": b"raw"})),
        payload(type="result", kind="task", body=task_body(metadata=[1])),
        payload(type="event", kind="status", body={"task_id": "t"}),
        payload(type="event", kind="weather", body={}),
        payload(type="error", code="oops", message="x"),
        payload(type="error", code=1, message="x" * 5000),
    ],
)
def test_bad_responses_are_refused(bad: bytes) -> None:
    with pytest.raises(ALLOWED):
        decode_response(bad)


def message_body(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts), "message_id": "m"}


@pytest.mark.parametrize(
    ("part", "ok"),
    [
        ({"kind": "text", "text": "x" * MAX_TEXT}, True),
        ({"kind": "text", "text": "x" * (MAX_TEXT + 1)}, False),
        ({"kind": "file", "bytes": b"x" * MAX_FILE}, True),
        ({"kind": "file", "bytes": b"x" * (MAX_FILE + 1)}, False),
        ({"kind": "file", "bytes": b"x", "uri": "https://x"}, False),
        ({"kind": "file", "name": "no content"}, False),
        ({"kind": "data", "data": {"a": [1, {"b": None}]}}, True),
        ({"kind": "data", "data": [1]}, False),
        ({"kind": "video"}, False),
        ({"text": "no kind"}, False),
    ],
)
def test_part_limits(part: dict[str, Any], ok: bool) -> None:
    raw = pack(message_body(part))
    if ok:
        assert isinstance(from_wire(Message, unpack(raw)), Message)
    else:
        with pytest.raises(DecodeError):
            from_wire(Message, unpack(raw))


def test_count_limits() -> None:
    text = {"kind": "text", "text": "x"}
    from_wire(Message, message_body(*[text] * MAX_PARTS))
    with pytest.raises(DecodeError):
        from_wire(Message, message_body(*[text] * (MAX_PARTS + 1)))
    card = card_to_wire(CARD)
    card["skills"] = card["skills"] * MAX_SKILLS
    card_from_wire(card)
    card["skills"] = card["skills"] + card["skills"][:1]
    with pytest.raises(DecodeError):
        card_from_wire(card)


def test_file_part_round_trip() -> None:
    art = Artifact("a", "f", (FilePart("f.bin", "application/octet-stream", b"\0\1", None),))
    assert from_wire(Artifact, to_wire(art)) == art


# ---- fuzzing ------------------------------------------------------------------------------------

structures = st.recursive(
    plain | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)


def decode_everything(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(*ALLOWED):
            decode(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    decode_everything(data)


@FUZZ
@given(structures)
def test_random_structures(obj: Any) -> None:
    decode_everything(pack(obj))
    for cls in (Task, Message, AgentCard, Artifact, TaskStatusUpdateEvent, TaskArtifactUpdateEvent):
        with contextlib.suppress(DecodeError):
            from_wire(cls, obj)


valid_payloads = st.one_of(
    st.builds(encode_request, ids, operations),
    st.builds(encode_result, ids, results),
    st.builds(encode_event, ids, stream_events),
)


@FUZZ
@given(valid_payloads, st.data())
def test_truncated_and_mutated_payloads(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    decode_everything(data[:cut])
    i = draw.draw(st.integers(0, len(data) - 1))
    decode_everything(data[:i] + bytes([data[i] ^ draw.draw(st.integers(1, 255))]) + data[i + 1 :])
    decode_everything(data + draw.draw(st.binary(min_size=1, max_size=8)))


def mutate(obj: Any, draw: st.DataObject) -> Any:
    """Replace one value somewhere inside ``obj`` by a random structure."""
    if isinstance(obj, dict) and obj and draw.draw(st.booleans()):
        key = draw.draw(st.sampled_from(sorted(obj)))
        return {**obj, key: mutate(obj[key], draw)}
    if isinstance(obj, list) and obj and draw.draw(st.booleans()):
        i = draw.draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], mutate(obj[i], draw), *obj[i + 1 :]]
    return draw.draw(structures)


@FUZZ
@given(valid_payloads, st.data())
def test_structurally_mutated_payloads(data: bytes, draw: st.DataObject) -> None:
    decode_everything(pack(mutate(unpack(data), draw)))


@FUZZ
@given(cards, st.data())
def test_mutated_cards(card: AgentCard, draw: st.DataObject) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(card_from_wire(mutate(card_to_wire(card), draw)), AgentCard)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"k": deep}
    body = to_wire(Task("t", "c", TaskStatus(TaskState.WORKING, None, NOW)))
    body["metadata"] = deep
    with pytest.raises(DecodeError):
        from_wire(Task, body)
    deep_payload = b"\x91" * 100_000 + b"\xc0"  # 100 000 nested one-element arrays
    decode_everything(deep_payload)


def test_unsupported_status_values_in_events() -> None:
    event = TaskStatusUpdateEvent("t", "c", TaskStatus(TaskState.COMPLETED, None, NOW), final=True)
    body = to_wire(event)
    body["status"]["timestamp"] = -1.0
    with pytest.raises(DecodeError):
        from_wire(TaskStatusUpdateEvent, body)
    body["status"]["timestamp"] = NOW
    body["final"] = "yes"
    with pytest.raises(DecodeError):
        from_wire(TaskStatusUpdateEvent, body)
    good = TaskArtifactUpdateEvent("t", "c", Artifact("a", None, (TextPart("x"),)))
    assert from_wire(TaskArtifactUpdateEvent, to_wire(good)) == good
    assert decode_request(encode_request("r", GetTask("t", 0))) == ("r", GetTask("t", 0))
