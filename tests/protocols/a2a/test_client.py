"""The client side of A2A JSON-RPC: SSE framing, replies, events, interface choice."""

from __future__ import annotations

import json

import pytest

from protocols.a2a import AgentCard, AgentInterface, Message, TaskStatusUpdateEvent
from protocols.a2a.client import (
    MAX_REPLY,
    RemoteError,
    SseDecoder,
    choose_interface,
    parse_reply,
    send_result,
    stream_event,
)
from protocols.errors import DecodeError


def test_sse_decoder_joins_data_lines_and_skips_the_rest() -> None:
    decoder = SseDecoder()
    stream = (b": keep-alive\n\nevent: x\ndata: {\"a\":\r\ndata: 1}\n\n"
              b"id: 3\nretry: 5\n\ndata: 2\n\n")
    events: list[str] = []
    for i in range(0, len(stream), 3):  # split anywhere, even inside a line
        events += decoder.feed(stream[i:i + 3])
    assert events == ['{"a":\n1}', "2"]


def test_sse_decoder_bounds_lines_and_events() -> None:
    with pytest.raises(DecodeError):
        SseDecoder().feed(b"data: " + b"x" * (MAX_REPLY + 100))
    decoder = SseDecoder(max_event=10)
    with pytest.raises(DecodeError):
        decoder.feed(b"data: 123456\ndata: 123456\n")


def test_parse_reply() -> None:
    ok = parse_reply(json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task"}}))
    assert ok == {"kind": "task"}
    with pytest.raises(RemoteError) as caught:
        parse_reply(json.dumps({"jsonrpc": "2.0", "id": 1,
                                "error": {"code": -32603, "message": "down"}}))
    assert (caught.value.code, caught.value.message) == (-32603, "down")
    for bad in ("[1]", "{", '{"jsonrpc": "2.0", "result": 3}', '{"result": {}}',
                '{"jsonrpc": "2.0", "error": {"code": "x"}}', "NaN"):
        with pytest.raises(DecodeError):
            parse_reply(bad)


def test_events_in_both_dialects() -> None:
    status = {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}
    event = stream_event({"statusUpdate": status}, "1.0")
    assert isinstance(event, TaskStatusUpdateEvent) and event.final
    v03 = {"kind": "status-update", "taskId": "t", "contextId": "c", "final": False,
           "status": {"state": "working"}}
    assert isinstance(stream_event(v03, "0.3"), TaskStatusUpdateEvent)
    message = {"kind": "message", "role": "agent", "messageId": "m",
               "parts": [{"kind": "text", "text": "hi"}]}
    assert isinstance(send_result(message, "0.3"), Message)
    for bad, dialect in (({"statusUpdate": status, "task": {}}, "1.0"), ({}, "1.0"),
                         ({"kind": "nope"}, "0.3")):
        with pytest.raises(DecodeError):
            stream_event(bad, dialect)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        send_result({"statusUpdate": status}, "1.0")


def test_choose_interface_prefers_v1_then_v03() -> None:
    both = AgentCard("a", "b", "1", supported_interfaces=(
        AgentInterface("http://h/v03", "JSONRPC", "0.3.0"),
        AgentInterface("http://h/v1", "JSONRPC", "1.0")))
    assert choose_interface(both, "http://h") == ("http://h/v1", "1.0")
    old = AgentCard("a", "b", "1", supported_interfaces=(
        AgentInterface("http://h/v03", "JSONRPC", "0.3.0"),))
    assert choose_interface(old, "http://h") == ("http://h/v03", "0.3")
    assert choose_interface(AgentCard("a", "b", "1"), "http://h") == ("http://h", "1.0")
    grpc = AgentCard("a", "b", "1", supported_interfaces=(AgentInterface("h:1", "GRPC", "1.0"),))
    with pytest.raises(DecodeError):
        choose_interface(grpc, "http://h")
