"""The A2A JSON forms and JSON-RPC, checked against a2a-sdk's own types.

v1.0 JSON must parse *strictly* (no unknown fields) into a2a-sdk's protobuf messages, and
what the sdk writes must decode back to the same value; v0.3 JSON must validate against the
sdk's v0.3 pydantic models. The parsers must only ever raise their own errors.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from a2a.client.card_resolver import parse_agent_card
from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as pb
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message as Proto
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.a2a import (
    INVALID_AGENT_RESPONSE,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_HISTORY,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PUSH_NOTIFICATION_NOT_SUPPORTED,
    TASK_NOT_FOUND,
    UNSUPPORTED_OPERATION,
    A2AError,
    AgentCard,
    AgentInterface,
    Artifact,
    CancelTask,
    FilePart,
    GetAgentCard,
    GetTask,
    ListTasks,
    Message,
    Operation,
    SendMessage,
    SendStreamingMessage,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    decode_request,
    encode_request,
)
from protocols.a2a.dialects import V03, V1, Dialect, timestamp_from_json, timestamp_to_json
from protocols.a2a.json_decode import from_json
from protocols.a2a.json_encode import card_document, to_json
from protocols.a2a.jsonrpc import (
    MAX_RPC_BODY,
    RpcCall,
    RpcError,
    final_state,
    parse_rpc,
    rpc_error,
    rpc_event,
    rpc_request,
    rpc_result,
    sse_frame,
)
from protocols.errors import DecodeError
from tests.protocols.a2a.helpers import (
    CARD,
    NOW,
    artifacts,
    cards,
    messages,
    operations,
    plain,
    stream_events,
    tasks,
    timestamps,
)

PROPS = settings(
    deadline=timedelta(seconds=2), max_examples=75, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings(
    deadline=timedelta(seconds=2), max_examples=120, suppress_health_check=[HealthCheck.too_slow]
)
dialects = st.sampled_from([V1, V03])
ALLOWED = (DecodeError, A2AError)


def expected(obj: Any, dialect: Dialect) -> Any:
    """v1.0 has no "final" on status updates: it is implied by the state."""
    if dialect == V1 and isinstance(obj, TaskStatusUpdateEvent):
        return replace(obj, final=final_state(obj.status.state))
    return obj


def through_json(obj: dict[str, Any]) -> Any:
    return json.loads(json.dumps(obj, allow_nan=False))


# ---- round trips --------------------------------------------------------------------------------


@PROPS
@given(tasks | messages | artifacts | stream_events, dialects)
def test_json_round_trip(obj: Any, dialect: Dialect) -> None:
    body = through_json(to_json(obj, dialect))
    assert from_json(type(obj), body, dialect) == expected(obj, dialect)


@PROPS
@given(cards)
def test_card_round_trip(card: AgentCard) -> None:
    assert from_json(AgentCard, through_json(to_json(card))) == card
    # the served document (v1.0 + v0.3 fields) reads back as the v1.0 card
    assert from_json(AgentCard, through_json(card_document(card))) == card


@given(timestamps)
def test_timestamps(ts: float) -> None:
    text = timestamp_to_json(ts)
    assert text.endswith("Z") and "T" in text
    assert timestamp_from_json(text, "t") == ts


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20.000Z", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        ("2023-11-14T22:13:20.5Z", NOW + 0.5),
        ("2023-11-14T22:13:20.123456789Z", NOW + 0.123456),
    ],
)
def test_timestamp_forms(text: str, ts: float) -> None:
    assert timestamp_from_json(text, "t") == pytest.approx(ts, abs=1e-6)


@pytest.mark.parametrize(
    "bad", ["", "yesterday", "1969-12-31T23:59:59Z", "10000-01-01T00:00:00Z", 5, None, "9" * 100]
)
def test_bad_timestamps(bad: Any) -> None:
    with pytest.raises(DecodeError):
        timestamp_from_json(bad, "t")


# ---- against a2a-sdk 1.x (protobuf JSON) --------------------------------------------------------

PROTO_OF: dict[type, type[Proto]] = {
    Task: pb.Task,
    Message: pb.Message,
    Artifact: pb.Artifact,
    TaskStatusUpdateEvent: pb.TaskStatusUpdateEvent,
    TaskArtifactUpdateEvent: pb.TaskArtifactUpdateEvent,
    AgentCard: pb.AgentCard,
}


@PROPS
@given(tasks | messages | artifacts | stream_events | cards)
def test_v1_json_is_what_the_sdk_reads_and_writes(obj: Any) -> None:
    proto_cls = PROTO_OF[type(obj)]
    # strict: an unknown field name would raise ParseError
    proto = ParseDict(through_json(to_json(obj, V1)), proto_cls())
    back = from_json(type(obj), through_json(MessageToDict(proto)), V1)
    assert back == expected(obj, V1)


def test_v1_spellings() -> None:
    task = Task(
        "t1",
        "c1",
        TaskStatus(TaskState.INPUT_REQUIRED, Message("agent", (TextPart("?"),), "m2"), NOW),
        history=(Message("user", (FilePart("a.txt", "text/plain", b"hi", None),), "m1"),),
    )
    assert to_json(task) == {
        "id": "t1",
        "contextId": "c1",
        "status": {
            "state": "TASK_STATE_INPUT_REQUIRED",
            "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "?"}]},
            "timestamp": "2023-11-14T22:13:20Z",
        },
        "history": [
            {
                "messageId": "m1",
                "role": "ROLE_USER",
                "parts": [{"raw": "aGk=", "filename": "a.txt", "mediaType": "text/plain"}],
            }
        ],
    }
    proto = ParseDict(to_json(task), pb.Task())
    assert proto.status.state == pb.TaskState.TASK_STATE_INPUT_REQUIRED
    assert proto.history[0].parts[0].raw == b"hi"


def test_v1_accepts_enum_numbers_and_url_safe_base64() -> None:
    body = {
        "messageId": "m",
        "role": 1,
        "parts": [{"raw": "-_8"}, {"url": "https://x", "mediaType": "image/png"}],
    }
    message = from_json(Message, body)
    assert message.role == "user"
    assert message.parts == (
        FilePart(None, None, b"\xfb\xff", None),
        FilePart(None, "image/png", None, "https://x"),
    )
    status = from_json(TaskStatus, {"state": 3})
    assert status == TaskStatus(TaskState.COMPLETED, None, 0.0)


@pytest.mark.parametrize(
    "part",
    [
        {},
        {"text": "a", "data": {}},
        {"raw": "aGk=", "url": "https://x"},
        {"data": [1, 2]},
        {"raw": "not base64!"},
        {"text": 5},
        {"url": 5},
    ],
)
def test_v1_bad_parts(part: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        from_json(Message, {"messageId": "m", "role": "ROLE_USER", "parts": [part]})


def test_card_document_parses_with_the_sdk() -> None:
    card = replace(
        CARD,
        supported_interfaces=(
            AgentInterface("http://h:1/a2a", "JSONRPC", "1.0"),
            AgentInterface("http://h:1/a2a", "JSONRPC", "0.3.0"),
        ),
    )
    document = card_document(card)
    assert document["url"] == "http://h:1/a2a"
    assert document["preferredTransport"] == "JSONRPC"
    assert document["protocolVersion"] == "0.3.0"
    proto = parse_agent_card(through_json(document))
    assert proto.name == CARD.name
    assert [(i.url, i.protocol_version) for i in proto.supported_interfaces] == [
        ("http://h:1/a2a", "1.0"),
        ("http://h:1/a2a", "0.3.0"),
    ]
    assert proto.skills[0].tags == ["test", "echo"]
    assert proto.capabilities.streaming
    # and as a v0.3 card
    legacy = v03.AgentCard.model_validate(through_json(document))
    assert legacy.url == "http://h:1/a2a" and legacy.skills[0].id == "echo"


@PROPS
@given(cards)
def test_any_card_document_parses_with_the_sdk(card: AgentCard) -> None:
    proto = parse_agent_card(through_json(card_document(card)))
    assert proto.name == card.name and len(proto.skills) == len(card.skills)
    v03.AgentCard.model_validate(through_json(card_document(card)))


# ---- against a2a-sdk's v0.3 models --------------------------------------------------------------

V03_MODEL: dict[type, Any] = {
    Task: v03.Task,
    Message: v03.Message,
    Artifact: v03.Artifact,
    TaskStatusUpdateEvent: v03.TaskStatusUpdateEvent,
    TaskArtifactUpdateEvent: v03.TaskArtifactUpdateEvent,
}


@PROPS
@given(tasks | messages | artifacts | stream_events)
def test_v03_json_is_what_the_v03_models_read_and_write(obj: Any) -> None:
    model = V03_MODEL[type(obj)].model_validate(through_json(to_json(obj, V03)))
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert from_json(type(obj), dumped, V03) == obj


def test_v03_spellings() -> None:
    event = TaskStatusUpdateEvent("t", "c", TaskStatus(TaskState.INPUT_REQUIRED, None, NOW), True)
    assert to_json(event, V03) == {
        "kind": "status-update",
        "taskId": "t",
        "contextId": "c",
        "status": {"state": "input-required", "timestamp": "2023-11-14T22:13:20Z"},
        "final": True,
    }
    part = to_json(FilePart("a", "text/plain", b"hi", None), V03)
    assert part == {
        "kind": "file",
        "file": {"bytes": "aGk=", "name": "a", "mimeType": "text/plain"},
    }


# ---- JSON-RPC -----------------------------------------------------------------------------------

v1_operations = operations
v03_operations = operations.filter(lambda op: not isinstance(op, ListTasks))
request_ids = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)


@PROPS
@given(request_ids, v1_operations)
def test_v1_requests_round_trip(request_id: Any, op: Operation) -> None:
    body = json.dumps(rpc_request(request_id, op, V1)).encode()
    call = parse_rpc(body)
    assert call == RpcCall(request_id, call.method, V1, op)
    assert call.streaming == isinstance(op, SendStreamingMessage)


@PROPS
@given(request_ids, v03_operations)
def test_v03_requests_round_trip(request_id: Any, op: Operation) -> None:
    call = parse_rpc(json.dumps(rpc_request(request_id, op, V03)))
    assert (call.id, call.dialect, call.op) == (request_id, V03, op)


def test_v03_has_no_list_tasks() -> None:
    with pytest.raises(ValueError):
        rpc_request(1, ListTasks(), V03)


SDK_REQUESTS: dict[type, type[Proto]] = {
    SendMessage: pb.SendMessageRequest,
    SendStreamingMessage: pb.SendMessageRequest,
    GetTask: pb.GetTaskRequest,
    ListTasks: pb.ListTasksRequest,
    CancelTask: pb.CancelTaskRequest,
    GetAgentCard: pb.GetExtendedAgentCardRequest,
}


@PROPS
@given(v1_operations)
def test_v1_request_params_are_the_sdks(op: Operation) -> None:
    """Our requests parse strictly as the sdk's, and the sdk's requests parse as ours."""
    request = rpc_request("id-1", op, V1)
    proto = ParseDict(through_json(request["params"]), SDK_REQUESTS[type(op)]())
    sdk_request = {**request, "params": MessageToDict(proto)}
    assert parse_rpc(json.dumps(sdk_request)).op == op


def test_sdk_send_message_request() -> None:
    """Exactly what JsonRpcTransport.send_message puts on the wire."""
    proto = pb.SendMessageRequest(
        message=pb.Message(
            role=pb.Role.ROLE_USER,
            message_id="m1",
            context_id="ctx",
            parts=[pb.Part(text="hi"), pb.Part(url="https://x/y", filename="y")],
        ),
        configuration=pb.SendMessageConfiguration(
            history_length=2, return_immediately=True, accepted_output_modes=["text/plain"]
        ),
    )
    body = {"jsonrpc": "2.0", "id": "abc", "method": "SendMessage", "params": MessageToDict(proto)}
    call = parse_rpc(json.dumps(body))
    assert call.op == SendMessage(
        Message(
            "user",
            (TextPart("hi"), FilePart("y", None, None, "https://x/y")),
            "m1",
            context_id="ctx",
        ),
        blocking=False,
        history_length=2,
    )


def rpc_fails(body: Any, code: int) -> RpcError:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    with pytest.raises(RpcError) as info:
        parse_rpc(raw)
    assert info.value.code == code, info.value.message
    response = info.value.to_response()
    assert response["jsonrpc"] == "2.0" and response["error"]["code"] == code
    return info.value


def req(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, **extra}
    if params is not None:
        body["params"] = params
    return body


MESSAGE_V1 = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
MESSAGE_V03 = {
    "kind": "message",
    "messageId": "m",
    "role": "user",
    "parts": [{"kind": "text", "text": "hi"}],
}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", PARSE_ERROR),
        (b"", PARSE_ERROR),
        (b"\xff\xfe\x00", PARSE_ERROR),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": NaN}}', PARSE_ERROR),
        (b"[" * 100_000 + b"]" * 100_000, PARSE_ERROR),
        (b"1" * 5000, PARSE_ERROR),
        ([req("GetTask", {"id": "t"})], INVALID_REQUEST),
        (b'"just a string"', INVALID_REQUEST),
        (b"42", INVALID_REQUEST),
        (req("GetTask", {"id": "t"}, jsonrpc="1.0"), INVALID_REQUEST),
        ({"id": 1, "method": "GetTask", "params": {"id": "t"}}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": True, "method": "GetTask"}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "GetTask"}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": [], "method": "GetTask"}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, INVALID_REQUEST),
        (req("tasks/teleport"), METHOD_NOT_FOUND),
        (req("sendMessage", {"message": MESSAGE_V1}), METHOD_NOT_FOUND),
        (req("SubscribeToTask", {"id": "t"}), UNSUPPORTED_OPERATION),
        (req("tasks/resubscribe", {"id": "t"}), UNSUPPORTED_OPERATION),
        (req("CreateTaskPushNotificationConfig", {}), PUSH_NOTIFICATION_NOT_SUPPORTED),
        (req("tasks/pushNotificationConfig/set", {}), PUSH_NOTIFICATION_NOT_SUPPORTED),
        (req("GetTask", [1, 2]), INVALID_PARAMS),
        (req("GetTask", {}), INVALID_PARAMS),
        (req("GetTask", {"id": ""}), INVALID_PARAMS),
        (req("GetTask", {"id": "t", "historyLength": -1}), INVALID_PARAMS),
        (req("GetTask", {"id": "t", "historyLength": "many"}), INVALID_PARAMS),
        (req("ListTasks", {"pageSize": 0}), INVALID_PARAMS),
        (req("ListTasks", {"pageSize": 101}), INVALID_PARAMS),
        (req("ListTasks", {"status": "TASK_STATE_SLEEPING"}), INVALID_PARAMS),
        (req("ListTasks", {"pageToken": "p2"}), INVALID_PARAMS),
        (req("SendMessage", {}), INVALID_PARAMS),
        (req("SendMessage", {"message": MESSAGE_V03}), INVALID_PARAMS),
        (req("message/send", {"message": MESSAGE_V1}), INVALID_PARAMS),
        (req("SendMessage", {"message": {**MESSAGE_V1, "role": "ROLE_BOSS"}}), INVALID_PARAMS),
        (req("SendMessage", {"message": {**MESSAGE_V1, "parts": [{}] * 65}}), INVALID_PARAMS),
        (
            req(
                "SendMessage",
                {
                    "message": MESSAGE_V1,
                    "configuration": {"taskPushNotificationConfig": {"url": "x"}},
                },
            ),
            PUSH_NOTIFICATION_NOT_SUPPORTED,
        ),
        (
            req(
                "message/send",
                {"message": MESSAGE_V03, "configuration": {"pushNotificationConfig": {"url": "x"}}},
            ),
            PUSH_NOTIFICATION_NOT_SUPPORTED,
        ),
    ],
)
def test_rpc_refusals(body: Any, code: int) -> None:
    rpc_fails(body, code)


def test_rpc_errors_keep_the_request_id_and_dialect() -> None:
    error = rpc_fails(req("GetTask", {}), INVALID_PARAMS)
    assert (error.request_id, error.dialect) == (7, V1)
    data = error.to_response()["error"]["data"]
    assert data[0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert data[0]["reason"] == "INVALID_PARAMS"
    error = rpc_fails(req("tasks/get", {}), INVALID_PARAMS)
    assert (error.request_id, error.dialect) == (7, V03)
    assert "data" not in error.to_response()["error"]
    assert rpc_fails(b"[", PARSE_ERROR).request_id is None


def test_lone_surrogates_are_refused() -> None:
    body = json.dumps(
        req("SendMessage", {"message": {**MESSAGE_V1, "parts": [{"text": "\ud800"}]}})
    )
    rpc_fails(body, INVALID_PARAMS)
    pair = json.dumps(
        req("SendMessage", {"message": {**MESSAGE_V1, "parts": [{"text": "\U0001f600"}]}})
    )
    assert "\\ud83d" in pair  # json.dumps escapes it as a surrogate pair, which is fine
    call = parse_rpc(pair)
    assert isinstance(call.op, SendMessage) and call.op.message.text == "\U0001f600"


def test_oversized_body() -> None:
    body = json.dumps(req("GetTask", {"id": "t", "pad": "x" * MAX_RPC_BODY}))
    rpc_fails(body, INVALID_REQUEST)


def test_rpc_defaults() -> None:
    call = parse_rpc(json.dumps(req("message/send", {"message": MESSAGE_V03})))
    assert call.op == SendMessage(Message("user", (TextPart("hi"),), "m"), blocking=True)
    call = parse_rpc(json.dumps(req("ListTasks")))
    assert call.op == ListTasks(page_size=50)
    call = parse_rpc(json.dumps(req("GetTask", {"id": "t", "historyLength": "1000"})))
    assert call.op == GetTask("t", MAX_HISTORY)  # clamped: no task keeps more
    call = parse_rpc(json.dumps(req("GetExtendedAgentCard", None, tenant="x")))
    assert call.op == GetAgentCard()
    call = parse_rpc(json.dumps(req("ListTasks", {"status": "TASK_STATE_UNSPECIFIED"})))
    assert call.op == ListTasks()


def task(n: int = 3) -> Task:
    history = tuple(Message("user", (TextPart(str(i)),), f"m{i}") for i in range(n))
    return Task(
        "t",
        "c",
        TaskStatus(TaskState.COMPLETED, None, NOW),
        history,
        (Artifact("a", None, (TextPart("x"),)),),
    )


def test_rpc_results() -> None:
    send = RpcCall(1, "SendMessage", V1, SendMessage(task().history[0], history_length=1))
    result = rpc_result(send, task())["result"]
    assert list(result) == ["task"] and len(result["task"]["history"]) == 1
    reply = Message("agent", (TextPart("hi"),), "r")
    assert rpc_result(send, reply)["result"] == {"message": to_json(reply)}
    send03 = RpcCall("x", "message/send", V03, SendMessage(reply))
    assert rpc_result(send03, task()) == {
        "jsonrpc": "2.0",
        "id": "x",
        "result": to_json(task(), V03),
    }
    listing = RpcCall(2, "ListTasks", V1, ListTasks(page_size=1, history_length=0))
    result = rpc_result(listing, (task(), task()))["result"]
    assert result["pageSize"] == 1 and result["totalSize"] == 1 and result["nextPageToken"] == ""
    assert "history" not in result["tasks"][0] and "artifacts" not in result["tasks"][0]
    listing = RpcCall(2, "ListTasks", V1, ListTasks(include_artifacts=True))
    assert "artifacts" in rpc_result(listing, [task()])["result"]["tasks"][0]
    ParseDict(rpc_result(listing, [task()])["result"], pb.ListTasksResponse())


@pytest.mark.parametrize(
    ("op", "value"),
    [
        (SendMessage(task().history[0]), "text"),
        (GetTask("t"), task().history[0]),
        (CancelTask("t"), None),
        (ListTasks(), task()),
        (ListTasks(), (task(), "x")),
        (GetAgentCard(), task()),
    ],
)
def test_wrong_result_types_are_invalid_agent_responses(op: Operation, value: Any) -> None:
    with pytest.raises(A2AError) as info:
        rpc_result(RpcCall(1, "x", V1, op), value)
    assert info.value.code == INVALID_AGENT_RESPONSE


def test_rpc_events_and_sse() -> None:
    stream = RpcCall(9, "SendStreamingMessage", V1, SendStreamingMessage(task().history[0]))
    event = TaskStatusUpdateEvent("t", "c", TaskStatus(TaskState.WORKING, None, NOW))
    payload = rpc_event(stream, event)
    assert list(payload["result"]) == ["statusUpdate"]
    ParseDict(payload["result"], pb.StreamResponse())
    frame = sse_frame(payload)
    assert frame.startswith(b"data: {") and frame.endswith(b"}\n\n") and frame.count(b"\n") == 2
    assert sse_frame(rpc_error(9, TASK_NOT_FOUND, "x"), event="error").startswith(b"event: error\n")
    stream03 = replace(stream, dialect=V03)
    assert rpc_event(stream03, event)["result"]["kind"] == "status-update"
    with pytest.raises(A2AError):
        rpc_event(stream, CARD)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # never an invalid JSON number on the wire
        sse_frame({"x": float("nan")})


# ---- fuzzing ------------------------------------------------------------------------------------

json_values = st.recursive(
    plain,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
model_types = [
    Task,
    Message,
    Artifact,
    TaskStatus,
    TaskStatusUpdateEvent,
    TaskArtifactUpdateEvent,
    AgentCard,
]


@FUZZ
@given(json_values, dialects)
def test_from_json_random_values(value: Any, dialect: Dialect) -> None:
    for cls in model_types:
        with contextlib.suppress(DecodeError):
            from_json(cls, value, dialect)


def mutate(obj: Any, draw: st.DataObject) -> Any:
    if isinstance(obj, dict) and obj and draw.draw(st.booleans()):
        key = draw.draw(st.sampled_from(sorted(obj)))
        if draw.draw(st.integers(0, 5)) == 0:
            return {k: v for k, v in obj.items() if k != key}
        return {**obj, key: mutate(obj[key], draw)}
    if isinstance(obj, list) and obj and draw.draw(st.booleans()):
        i = draw.draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], mutate(obj[i], draw), *obj[i + 1 :]]
    return draw.draw(json_values)


@FUZZ
@given(tasks | messages | stream_events | cards, dialects, st.data())
def test_from_json_mutated_values(obj: Any, dialect: Dialect, draw: st.DataObject) -> None:
    with contextlib.suppress(DecodeError):
        from_json(type(obj), mutate(to_json(obj, dialect), draw), dialect)


def parse_ok_or_rpc_error(body: bytes | str) -> None:
    try:
        call = parse_rpc(body)
    except RpcError as exc:
        assert isinstance(exc.code, int)
        json.dumps(exc.to_response(), allow_nan=False)
    else:  # whatever is accepted can cross the mesh unchanged
        assert decode_request(encode_request("r", call.op)) == ("r", call.op)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_rpc_random_bytes(body: bytes | str) -> None:
    parse_ok_or_rpc_error(body)


@FUZZ
@given(json_values)
def test_parse_rpc_random_json(value: Any) -> None:
    parse_ok_or_rpc_error(json.dumps(value))


@FUZZ
@given(request_ids, operations, dialects, st.data())
def test_parse_rpc_mutated_requests(
    request_id: Any, op: Operation, dialect: Dialect, draw: st.DataObject
) -> None:
    if dialect == V03 and isinstance(op, ListTasks):
        return
    body = rpc_request(request_id, op, dialect)
    parse_ok_or_rpc_error(json.dumps(mutate(body, draw)))
    text = json.dumps(body)
    parse_ok_or_rpc_error(text[: draw.draw(st.integers(0, len(text)))])


@pytest.mark.parametrize(
    "value",
    ["1e999", "-1e999", "1" * 4301, '"\\ud800"', '{"a": ' * 10_000],
)
def test_pathological_json(value: str) -> None:
    parse_ok_or_rpc_error(
        f'{{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {{"id": {value}}}}}'
    )
    parse_ok_or_rpc_error(value)
