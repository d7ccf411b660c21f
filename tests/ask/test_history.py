"""AskHistory: bounded, newest first, and its listeners see every ask."""

from __future__ import annotations

import time

from meshnode.ask.history import MAX_QUESTION, AskHistory, AskRecord


def _result(total: float) -> dict[str, object]:
    return {"timings": {"routing_s": 0.1, "network_s": 0.2, "retrieval_s": 0.3, "llm_s": 0.0,
                        "total_s": total}}


def test_keeps_the_newest_and_listeners_see_every_one() -> None:
    seen: list[AskRecord] = []
    history = AskHistory(keep=3, listeners=[seen.append])
    for i in range(5):
        history.record(f"q{i}", started=time.monotonic(), forwarded=False, result=_result(i))
    history.record("x" * (MAX_QUESTION + 10), started=time.monotonic(), forwarded=True,
                   error="no agent")
    assert [r.question[:2] for r in history.recent()] == ["xx", "q4", "q3"]
    assert len(seen) == 6 and [r.seq for r in seen] == [1, 2, 3, 4, 5, 6]
    failed = history.recent(1)[0]
    assert not failed.ok and failed.forwarded and len(failed.question) == MAX_QUESTION
    assert set(failed.stage_seconds()) == {"total"}
    assert seen[4].stage_seconds() == {"routing": 0.1, "network": 0.2, "retrieval": 0.3,
                                       "llm": 0.0, "total": 4.0}


def test_a_failing_listener_does_not_fail_the_ask() -> None:
    def broken(_: AskRecord) -> None:
        raise RuntimeError("observer bug")

    history = AskHistory(listeners=[broken])
    record = history.record("q", started=time.monotonic(), forwarded=False, result=_result(1))
    assert history.recent() == [record]
