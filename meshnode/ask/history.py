"""AskHistory: a bounded record of the questions this node routed, for operators.

The asker records every question it routed (asked here or forwarded by a neighbour): when,
how long each stage took, who answered and why, or why nobody did. The dashboard shows the
recent ones; listeners (the node's metrics) see each one as it is recorded, so that latency
histograms count every ask even when more arrive than the record keeps.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
#: Asks kept for the dashboard; each is a few kilobytes (the explanation, the answer).
KEPT_ASKS = 100
#: Longest question text kept (a question can be up to the A2A message size).
MAX_QUESTION = 500
#: Stages of an answered ask whose seconds the asker reports in ``timings``.
STAGES = ("routing", "network", "retrieval", "llm", "total")


@dataclass(frozen=True, slots=True)
class AskRecord:
    seq: int
    at: float
    question: str
    ok: bool
    forwarded: bool
    #: The asker's result (agent, peer, answer, timings, explain), when ``ok``.
    result: dict[str, Any] | None = None
    error: str = ""
    seconds: float = 0.0

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage (names of STAGES) of an answered ask; only the total for a
        failed one."""
        if self.result is None:
            return {"total": self.seconds}
        timings = self.result.get("timings", {})
        return {stage: float(timings.get(f"{stage}_s", 0.0)) for stage in STAGES}

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "question": self.question, "ok": self.ok,
                "forwarded": self.forwarded, "result": self.result, "error": self.error,
                "seconds": round(self.seconds, 4)}


@dataclass
class AskHistory:
    keep: int = KEPT_ASKS
    listeners: list[Callable[[AskRecord], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._records: deque[AskRecord] = deque(maxlen=self.keep)
        self._seq = itertools.count(1)

    def record(
        self, question: str, *, started: float, forwarded: bool,
        result: dict[str, Any] | None = None, error: str = "",
    ) -> AskRecord:
        """Record one routed question; ``started`` is its time.monotonic() start."""
        record = AskRecord(
            seq=next(self._seq), at=time.time(), question=question[:MAX_QUESTION],
            ok=result is not None, forwarded=forwarded, result=result, error=error,
            seconds=time.monotonic() - started,
        )
        self._records.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # an observer's bug must not fail the ask it observes
                log.exception("ask listener failed")
        return record

    def recent(self, limit: int | None = None) -> list[AskRecord]:
        """The kept records, newest first."""
        records = list(reversed(self._records))
        return records if limit is None else records[:limit]
