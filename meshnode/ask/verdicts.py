"""Verdicts: the answers this node took for its operator, waiting for a verdict.

An answer taken may be rated during ``routing.rating_window_s``; one not rated bad by then
counts as accepted (:meth:`Verdicts.settle`). Either verdict is trust evidence for the
agent that gave it, recorded through the trust graph's evidence table, and is shared by the
agents whose answers said the same (corroboration). An accepted (or well rated) answer to a
question asked here is offered to the :class:`~meshnode.ask.learning.Learner`, which may
keep it as a solution.

Past :data:`KEPT_ANSWERS` waiting, the oldest go unrated: an answer counts as accepted only
when its operator had the whole window to object.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from meshnode.ask.learning import Learner, Lesson
from meshnode.trust.evidence import Outcome
from meshnode.trust.graph import TrustGraph

KEPT_ANSWERS = 1000


@dataclass(slots=True)
class Taken:
    peer: str
    agent: str
    at: float
    lesson: Lesson | None = None  # None: not to be learnt from (e.g. a forwarded question)
    #: (peer, agent) of the other answers that said the same: they share the verdict.
    corroborated: tuple[tuple[str, str], ...] = ()


class Verdicts:
    """The answers waiting for a verdict, and what each verdict does."""

    def __init__(self, trust: TrustGraph, window_s: Callable[[], float],
                 learner: Learner | None) -> None:
        self.trust = trust
        #: The rating window in seconds (read at each use: settings may change).
        self.window_s = window_s
        self.learner = learner
        #: Answers this node took for its operator and that may still be rated, oldest first.
        self.answered: OrderedDict[str, Taken] = OrderedDict()
        #: Answers dropped unrated because more than KEPT_ANSWERS were waiting.
        self.unrated_dropped = 0

    def take(self, task_id: str, taken: Taken) -> None:
        self.answered[task_id] = taken
        self.settle(time.time())

    def settle(self, now: float) -> None:
        """Count as accepted the answers whose rating window passed without a rating."""
        while len(self.answered) > KEPT_ANSWERS:
            self.answered.popitem(last=False)
            self.unrated_dropped += 1
        while self.answered:
            task_id, taken = next(iter(self.answered.items()))
            if now - taken.at < self.window_s():
                break
            del self.answered[task_id]
            self._verdict(taken, (Outcome.ACCEPTED,), now)
            self._learn(taken, "accepted")

    def rate(self, task_id: str, good: bool) -> Taken | None:
        """A person's verdict: it replaces the automatic acceptance (a bad answer that was
        also counted as accepted would be half-forgiven). None if ``task_id`` is not
        waiting for one."""
        self.settle(time.time())
        taken = self.answered.pop(task_id, None)
        if taken is None:
            return None
        outcomes = (Outcome.ACCEPTED, Outcome.RATED_GOOD) if good else (Outcome.RATED_BAD,)
        self._verdict(taken, outcomes, time.time())
        self._learn(taken, "rated_good" if good else "rated_bad")
        return taken

    def _verdict(self, taken: Taken, outcomes: tuple[Outcome, ...], now: float) -> None:
        """Whoever gave the answer the user judged, the trust it earns goes to every agent
        that gave it: the one taken and those that said the same."""
        for peer, agent in ((taken.peer, taken.agent), *taken.corroborated):
            for outcome in outcomes:
                self.trust.record(peer, outcome, skill=agent, now=now)

    def _learn(self, taken: Taken, verdict: str) -> None:
        if self.learner is not None and taken.lesson is not None:
            self.learner.offer(taken.lesson, verdict)
