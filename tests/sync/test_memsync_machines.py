"""Tests of the memsync state machines, driven purely in memory (no I/O, no store)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.errors import DecodeError, ProtocolError
from protocols.memsync import (
    MAX_BATCH,
    Batch,
    Bye,
    ClientState,
    Closed,
    Error,
    Message,
    Pull,
    RecordsReceived,
    ServerState,
    Summary,
    SyncClient,
    SyncServer,
    SyncStateError,
    UnexpectedMessage,
    WrongTenant,
    decode_message,
    encode_message,
    error_code,
)
from protocols.records import MemoryRecord, new_tombstone, record_to_wire
from tests.sync.helpers import ALICE, BOB, CAROL, TENANT, chain, frames_of, messages, record

FUZZ = settings(
    deadline=timedelta(seconds=5),
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHAINS = {s.peer_id: chain(s, 40) for s in (ALICE, BOB, CAROL)}
Store = Mapping[str, Sequence[MemoryRecord]]
ClientEvent = Summary | RecordsReceived | Error | Closed


def sent(data: bytes) -> list[Message]:
    return [decode_message(frame) for frame in frames_of(data)]


def serve(server: SyncServer, data: bytes, store: Store) -> list[Pull]:
    """Feed the server and answer it from ``store`` like the Replicator does."""
    pulls = []
    for event in server.receive_data(data):
        if isinstance(event, Summary):
            server.send_summary({a: len(rs) for a, rs in store.items() if rs})
        elif isinstance(event, Pull):
            pulls.append(event)
            records = store[event.author][event.after_seq : event.after_seq + event.limit + 1]
            server.send_batch(records, more=len(records) > event.limit)
    return pulls


def feed(client: SyncClient, data: bytes) -> list[ClientEvent]:
    """Feed the client and keep every batch it hands out, as a store that takes all would."""
    events = client.receive_data(data)
    for event in events:
        if isinstance(event, RecordsReceived):
            client.applied()
    return events


def converse(
    client: SyncClient, server: SyncServer, store: Store
) -> tuple[list[ClientEvent], list[Pull]]:
    events: list[ClientEvent] = []
    pulls: list[Pull] = []
    while out := client.data_to_send():
        pulls += serve(server, out, store)
        if back := server.data_to_send():
            events += feed(client, back)
    return events, pulls


def pulled(events: Sequence[ClientEvent]) -> list[MemoryRecord]:
    return [r for e in events if isinstance(e, RecordsReceived) for r in e.records]


@FUZZ
@given(
    ours=st.dictionaries(st.sampled_from(sorted(CHAINS)), st.integers(0, 40)),
    theirs=st.dictionaries(st.sampled_from(sorted(CHAINS)), st.integers(0, 40)),
    batch_size=st.integers(1, 12),
)
def test_a_sync_pulls_exactly_what_is_missing_in_bounded_batches(
    ours: dict[str, int], theirs: dict[str, int], batch_size: int
) -> None:
    client = SyncClient(TENANT, {a: n for a, n in ours.items() if n}, batch_size=batch_size)
    server = SyncServer(TENANT)
    events, pulls = converse(client, server, {a: CHAINS[a][:n] for a, n in theirs.items()})

    assert client.finished and server.closed
    expected = [r for a in sorted(theirs) for r in CHAINS[a][ours.get(a, 0) : theirs[a]]]
    assert pulled(events) == expected
    assert all(p.limit <= batch_size for p in pulls)
    assert len(pulls) == sum(
        math.ceil(max(theirs[a] - ours.get(a, 0), 0) / batch_size) for a in theirs
    )
    assert client.behind() == {}


def test_nothing_missing_means_summary_then_bye() -> None:
    client = SyncClient(TENANT, {ALICE.peer_id: 3})
    server = SyncServer(TENANT)
    events, pulls = converse(client, server, {ALICE.peer_id: CHAINS[ALICE.peer_id][:3]})
    assert pulls == [] and pulled(events) == [] and client.finished


def test_server_cuts_a_batch_to_fit_the_frame_and_client_comes_back() -> None:
    big = [record(ALICE, seq, text="x" * 3000) for seq in range(1, 11)]
    client = SyncClient(TENANT, {}, max_frame=16 * 1024)
    server = SyncServer(TENANT, max_frame=16 * 1024)
    events, pulls = converse(client, server, {ALICE.peer_id: big})
    assert pulled(events) == big
    assert len(pulls) > 2  # every frame held only a few of the 3 KB records


def client_after_summary(theirs: dict[str, int], **kwargs: int) -> SyncClient:
    client = SyncClient(TENANT, {}, **kwargs)
    client.data_to_send()
    client.receive_data(encode_message(Summary(TENANT, theirs)))
    return client


def batch_frame(records: Sequence[MemoryRecord], *, done: bool = False, author: str = "") -> bytes:
    wires = tuple(record_to_wire(r) for r in records)
    return encode_message(Batch(author or ALICE.peer_id, wires, done))


def test_a_bad_record_is_rejected_with_everything_after_it() -> None:
    records = CHAINS[ALICE.peer_id][:6]
    wires = [record_to_wire(r) for r in records]
    wires[3] = {**wires[3], "text": "altered in transit"}
    client = client_after_summary({ALICE.peer_id: 6})
    assert sent(client.data_to_send()) == [Pull(ALICE.peer_id, 0, 6)]

    [event] = feed(client, encode_message(Batch(ALICE.peer_id, tuple(wires), True)))

    assert isinstance(event, RecordsReceived)
    assert event.records == tuple(records[:3])
    assert len(event.rejected) == 1 and "does not match its content" in event.rejected[0]
    assert sent(client.data_to_send()) == [Bye()]  # no point asking this peer again
    assert client.behind() == {ALICE.peer_id: 3}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (record(ALICE, 2), "account for #3"),  # the same seq again
        (record(ALICE, 1, text="older"), "account for #3"),  # going back
        (record(ALICE, 4), "account for #3"),  # skipping one, with nothing to explain it
        (record(ALICE, 3, tenant="other-team"), "other-team"),
        (record(BOB, 3), "expected"),  # another author in Alice's batch
    ],
)
def test_records_out_of_sequence_are_rejected(bad: MemoryRecord, why: str) -> None:
    client = client_after_summary({ALICE.peer_id: 5})
    client.data_to_send()
    good = [record(ALICE, 1), record(ALICE, 2)]
    [event] = client.receive_data(batch_frame([*good, bad, record(ALICE, 4)]))
    assert isinstance(event, RecordsReceived)
    assert event.records == tuple(good)
    assert why in event.rejected[0]


def test_a_gap_stops_the_batch_and_the_mark_stays_before_it() -> None:
    client = client_after_summary({ALICE.peer_id: 3})
    client.data_to_send()
    [event] = feed(client, batch_frame([record(ALICE, 1), record(ALICE, 3)], done=True))
    assert isinstance(event, RecordsReceived)
    assert event.records == (record(ALICE, 1),) and "#2" in event.rejected[0]
    assert client.behind() == {ALICE.peer_id: 2}  # #2 and #3 still wanted


def test_a_tombstone_accounts_for_the_seq_it_frees() -> None:
    one, two, three = chain(ALICE, 3)
    tomb = new_tombstone(ALICE, two, created=1_800_000_000.0, seq=4)
    client = client_after_summary({ALICE.peer_id: 4})
    client.data_to_send()
    # The server's entries: #1, then for #2 the tombstone freeing it, #3, and #4 itself.
    [event] = feed(client, batch_frame([one, tomb, three, tomb], done=True))
    assert isinstance(event, RecordsReceived)
    assert event.records == (one, tomb, three, tomb) and event.rejected == ()
    assert client.finished and client.behind() == {}


def test_an_empty_batch_that_is_not_done_does_not_loop_forever() -> None:
    client = client_after_summary({ALICE.peer_id: 5, BOB.peer_id: 1})
    assert sent(client.data_to_send()) == [Pull(ALICE.peer_id, 0, 5)]
    feed(client, batch_frame([], done=False))
    assert sent(client.data_to_send()) == [Pull(BOB.peer_id, 0, 1)]


def test_the_client_asks_for_no_more_than_was_kept() -> None:
    client = client_after_summary({ALICE.peer_id: 6, BOB.peer_id: 1}, batch_size=3)
    assert sent(client.data_to_send()) == [Pull(ALICE.peer_id, 0, 3)]
    [event] = client.receive_data(batch_frame(chain(ALICE, 3)))
    assert isinstance(event, RecordsReceived)
    assert client.data_to_send() == b""  # nothing more until the batch is acknowledged
    with pytest.raises(UnexpectedMessage):
        client.receive_data(batch_frame(chain(ALICE, 3)))
    client.applied(1)  # the store kept #1 only: Alice waits for the next sync
    assert sent(client.data_to_send()) == [Pull(BOB.peer_id, 0, 1)]
    assert client.behind() == {ALICE.peer_id: 5, BOB.peer_id: 1}
    with pytest.raises(SyncStateError):
        client.applied()


# -- illegal sequences -----------------------------------------------------------------


def server_serving() -> SyncServer:
    server = SyncServer(TENANT)
    server.receive_data(encode_message(Summary(TENANT, {})))
    server.send_summary({ALICE.peer_id: 40})
    server.data_to_send()
    return server


@pytest.mark.parametrize(
    "msgs",
    [
        [Pull(ALICE.peer_id, 0, 1)],  # pull before any summary
        [Batch(ALICE.peer_id, (), True)],  # servers never receive batches
        [Bye()],  # bye before the summary
    ],
)
def test_server_refuses_messages_out_of_order(msgs: list[Message]) -> None:
    server = SyncServer(TENANT)
    with pytest.raises(UnexpectedMessage):
        server.receive_data(b"".join(encode_message(m) for m in msgs))


def test_server_refuses_a_pull_before_it_answered_the_summary() -> None:
    server = SyncServer(TENANT)
    with pytest.raises(UnexpectedMessage, match="SUMMARY_DUE"):
        server.receive_data(
            encode_message(Summary(TENANT, {})) + encode_message(Pull(ALICE.peer_id, 0, 1))
        )


def test_server_refuses_pipelined_pulls_and_a_second_summary() -> None:
    server = server_serving()
    with pytest.raises(UnexpectedMessage, match="BATCH_DUE"):
        server.receive_data(encode_message(Pull(ALICE.peer_id, 0, 1)) * 2)
    with pytest.raises(UnexpectedMessage):
        server_serving().receive_data(encode_message(Summary(TENANT, {})))


def test_nothing_may_follow_bye() -> None:
    server = server_serving()
    assert server.receive_data(encode_message(Bye())) == [Closed()]
    with pytest.raises(UnexpectedMessage, match="after the conversation ended"):
        server.receive_data(encode_message(Pull(ALICE.peer_id, 0, 1)))
    assert server.receive_data(b"") == []


@pytest.mark.parametrize(
    "msg",
    [
        Pull(ALICE.peer_id, 0, 1),
        Bye(),
        Batch(ALICE.peer_id, (), True),  # a batch before the summary
    ],
)
def test_client_refuses_anything_but_a_summary_first(msg: Message) -> None:
    with pytest.raises(UnexpectedMessage):
        SyncClient(TENANT, {}).receive_data(encode_message(msg))


def test_client_refuses_batches_that_do_not_answer_its_pull() -> None:
    with pytest.raises(UnexpectedMessage):  # another author
        client_after_summary({ALICE.peer_id: 5}).receive_data(
            batch_frame([record(BOB, 1)], author=BOB.peer_id)
        )
    with pytest.raises(UnexpectedMessage):  # more records than asked for
        client_after_summary({ALICE.peer_id: 5}, batch_size=2).receive_data(
            batch_frame(CHAINS[ALICE.peer_id][:3])
        )
    with pytest.raises(UnexpectedMessage):  # a second summary
        client_after_summary({ALICE.peer_id: 5}).receive_data(encode_message(Summary(TENANT, {})))


def test_client_refuses_anything_after_its_bye() -> None:
    client = client_after_summary({})
    assert client.finished and sent(client.data_to_send()) == [Bye()]
    with pytest.raises(UnexpectedMessage):
        client.receive_data(batch_frame([]))


def test_wrong_tenant_is_refused_by_both_sides() -> None:
    with pytest.raises(WrongTenant) as caught:
        SyncServer(TENANT).receive_data(encode_message(Summary("other-team", {})))
    assert error_code(caught.value) == "wrong_tenant"
    with pytest.raises(WrongTenant):
        SyncClient(TENANT, {}).receive_data(encode_message(Summary("other-team", {})))


def test_abort_sends_one_error_and_ends_the_conversation() -> None:
    server = SyncServer(TENANT)
    server.abort("wrong_tenant", "go away")
    server.abort("protocol", "twice")
    assert server.closed
    client = SyncClient(TENANT, {})
    client.data_to_send()
    assert client.receive_data(server.data_to_send()) == [Error("wrong_tenant", "go away")]
    assert client.closed and not client.finished


def test_end_of_stream() -> None:
    client = SyncClient(TENANT, {})
    assert client.receive_data(b"") == [Closed()]
    assert client.closed and not client.finished


def test_end_of_stream_inside_a_frame_is_an_error() -> None:
    server = SyncServer(TENANT)
    server.receive_data(encode_message(Summary(TENANT, {}))[:-1])
    with pytest.raises(DecodeError, match="inside a frame"):
        server.receive_data(b"")


def test_local_misuse_is_a_state_error() -> None:
    server = SyncServer(TENANT)
    with pytest.raises(SyncStateError):
        server.send_summary({})
    with pytest.raises(SyncStateError):
        server.send_batch([], more=False)
    server = server_serving()
    with pytest.raises(SyncStateError):
        server.send_summary({})
    with pytest.raises(ValueError):
        SyncClient(TENANT, {}, batch_size=MAX_BATCH + 1)


def test_states_advance_as_documented() -> None:
    server, client = SyncServer(TENANT), SyncClient(TENANT, {})
    seen = [(client.state, server.state)]
    server.receive_data(client.data_to_send())
    seen.append((client.state, server.state))
    server.send_summary({ALICE.peer_id: 1})
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    seen.append((client.state, server.state))
    server.send_batch([record(ALICE, 1)], more=False)
    client.receive_data(server.data_to_send())
    seen.append((client.state, server.state))
    client.applied()
    seen.append((client.state, server.state))
    assert seen == [
        (ClientState.AWAIT_SUMMARY, ServerState.AWAIT_SUMMARY),
        (ClientState.AWAIT_SUMMARY, ServerState.SUMMARY_DUE),
        (ClientState.PULLING, ServerState.BATCH_DUE),
        (ClientState.APPLYING, ServerState.IDLE),
        (ClientState.DONE, ServerState.IDLE),
    ]


@FUZZ
@given(st.lists(messages, max_size=6), st.booleans())
def test_any_message_sequence_gives_events_or_protocol_errors(
    msgs: list[Message], as_server: bool
) -> None:
    machine: SyncClient | SyncServer = SyncServer(TENANT) if as_server else SyncClient(TENANT, {})
    for msg in msgs:
        try:
            machine.receive_data(encode_message(msg))
        except ProtocolError:
            return
        if as_server and isinstance(machine, SyncServer):
            # Answer whatever is due so the sequence can go on.
            if machine.state is ServerState.SUMMARY_DUE:
                machine.send_summary({})
            elif machine.state is ServerState.BATCH_DUE:
                machine.send_batch([], more=False)


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 40))
def test_random_bytes_in_any_chunking_give_events_or_protocol_errors(
    data: bytes, chunk: int
) -> None:
    for machine in (SyncServer(TENANT), client_after_summary({ALICE.peer_id: 3})):
        try:
            for i in range(0, len(data), chunk):
                machine.receive_data(data[i : i + chunk])
        except ProtocolError:
            pass
