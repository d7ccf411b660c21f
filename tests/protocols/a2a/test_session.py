"""protocols.a2a.session: the rules of /meshnode/a2a/1.1.0 sessions, with no I/O."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.a2a import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    ErrorReply,
    Event,
    GetTask,
    Message,
    Result,
    SendStreamingMessage,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    encode_end,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
)
from protocols.a2a.session import (
    BUSY,
    Cancelled,
    ClientSession,
    NewRequest,
    ServerSession,
    SessionError,
    encode_cancel,
)
from protocols.codec import encode_frame, pack
from protocols.errors import DecodeError

NOW = 1_700_000_000.0
MESSAGE = Message(role="user", parts=(TextPart("hi"),), message_id="m1")


def _task(state: TaskState = TaskState.SUBMITTED) -> Task:
    return Task(id="t", context_id="c", status=TaskStatus(state, timestamp=NOW))


def _status(final: bool) -> TaskStatusUpdateEvent:
    state = TaskState.COMPLETED if final else TaskState.WORKING
    return TaskStatusUpdateEvent("t", "c", TaskStatus(state, timestamp=NOW), final=final)


def test_requests_are_pipelined_and_replies_interleave() -> None:
    client, server = ClientSession(), ServerSession()
    client.request("1", SendStreamingMessage(MESSAGE))
    client.request("2", GetTask("t"))
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [NewRequest, NewRequest]
    assert [e.request_id for e in events] == ["1", "2"]
    # Replies in any order, in one chunk of bytes.
    server.send("1", encode_frame(encode_event("1", _task())))
    server.send("2", encode_frame(encode_result("2", _task(TaskState.COMPLETED))))
    server.send("1", encode_frame(encode_event("1", _status(final=False))))
    server.send("1", encode_frame(encode_event("1", _status(final=True))))
    server.send("1", encode_frame(encode_end("1")))
    replies = client.receive_data(server.data_to_send())
    assert [(r.request_id, type(r)) for r in replies] == [
        ("1", Event), ("2", Result), ("1", Event), ("1", Event)]  # the end after final: over
    assert client.in_flight == 0


def test_replies_arrive_in_any_chunking() -> None:
    client, server = ClientSession(), ServerSession()
    client.request("1", SendStreamingMessage(MESSAGE))
    server.receive_data(client.data_to_send())
    server.send("1", encode_frame(encode_event("1", _task())) + encode_frame(encode_end("1")))
    data = server.data_to_send()
    replies = []
    for i in range(len(data)):
        replies += client.receive_data(data[i:i + 1])
    assert [type(r) for r in replies] == [Event, type(replies[1])] and client.in_flight == 0


def test_a_cancel_stops_the_request_on_both_sides() -> None:
    client, server = ClientSession(), ServerSession()
    client.request("1", SendStreamingMessage(MESSAGE))
    server.receive_data(client.data_to_send())
    client.cancel("1")
    assert server.receive_data(client.data_to_send()) == [Cancelled("1")]
    # A reply already under way is dropped by the client, not an error.
    server.send("1", encode_frame(encode_event("1", _task())))
    assert client.receive_data(server.data_to_send()) == []
    server.finish("1")
    with pytest.raises(SessionError):
        server.send("1", b"late")
    # A cancel of a request that is over means nothing.
    assert server.receive_data(encode_frame(encode_cancel("1"))) == []


def test_the_server_refuses_over_the_limit_and_reused_ids() -> None:
    server = ServerSession(max_in_flight=2)
    frames = b"".join(encode_frame(encode_request(i, GetTask("t"))) for i in ("a", "b", "a",
                                                                              "c"))
    events = server.receive_data(frames)
    assert [e.request_id for e in events] == ["a", "b"]
    errors = ClientSession()
    for i in ("a", "c"):  # the client of this test asked for them, as far as it knows
        errors._live.add(i)
    replies = errors.receive_data(server.data_to_send())
    assert all(isinstance(r, ErrorReply) for r in replies)
    assert [(r.request_id, r.code) for r in replies] == [("a", INVALID_REQUEST), ("c", BUSY)]
    assert server.refused == 2
    server.finish("a")
    assert [e.request_id for e in server.receive_data(
        encode_frame(encode_request("c", GetTask("t"))))] == ["c"]


def test_a_bad_operation_is_answered_and_garbage_ends_the_session() -> None:
    server = ServerSession()
    bad = pack({"v": 1, "type": "request", "id": "x", "op": "get_task", "body": {}})
    assert server.receive_data(encode_frame(bad)) == []
    client = ClientSession()
    client._live.add("x")
    [reply] = client.receive_data(server.data_to_send())
    assert isinstance(reply, ErrorReply) and reply.code == INVALID_PARAMS
    with pytest.raises(DecodeError):
        server.receive_data(encode_frame(pack([1, 2, 3])))
    with pytest.raises(DecodeError):
        ServerSession().receive_data(encode_frame(pack({"v": 1, "type": "cancel", "id": 5})))


def test_the_client_keeps_its_own_rules() -> None:
    client = ClientSession(max_in_flight=1)
    client.request("1", GetTask("t"))
    with pytest.raises(SessionError):
        client.request("1", GetTask("t"))
    with pytest.raises(SessionError):
        client.request("2", GetTask("t"))
    assert not client.can_send()
    # An error reply ends the request.
    client.receive_data(encode_frame(encode_error("1", -1, "no")))
    assert client.can_send()
    with pytest.raises(DecodeError):
        client.receive_data(encode_frame(b"\xc1"))


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_server(data: bytes) -> None:
    server = ServerSession()
    with contextlib.suppress(DecodeError):
        server.receive_data(encode_frame(data))
    assert server.in_flight <= 1
