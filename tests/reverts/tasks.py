"""Reverts for findings 1, 2 and 6 of the hostile-peers issue: forwarded questions and tasks
(see tests/reverts/__init__.py).

Each ``_*`` function below puts back what commit e70e586 did for one finding (read with
``git show e70e586:<path>``), re-created against today's classes and call signatures; the
:class:`Revert` entries at the end name the tests that must then fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import pytest

from meshnode.a2a import tasks as a2a_tasks
from meshnode.a2a.lifecycle import KEPT_TASKS, TaskStore
from meshnode.a2a.owners import OPERATOR, Owner, Quota
from meshnode.a2a.tasks import TaskService, deadline_of
from meshnode.ask.asker import Asker
from meshnode.ask.verdicts import KEPT_ANSWERS, Verdicts
from meshnode.errors import MeshnodeError
from meshnode.trust.evidence import Outcome
from protocols.a2a import (
    Artifact,
    DataPart,
    Message,
    Task,
    TextPart,
)
from tests.reverts.revert import Revert

# ---- 1. trust farming and blame through forwarded questions -----------------------------


async def _answer_forwarded_as_own(self: Asker, question: str, hops: int,
                                   visited: frozenset[str], deadline_s: float,
                                   owner: Owner) -> dict[str, Any]:
    # e70e586 asking.py:341-346: a forwarded question was asked like the operator's own.
    result = await self.ask(question, timeout=deadline_s, hops=hops, visited=visited,
                            owner=OPERATOR, keep_records=True)
    return dict(result["answer"])


async def _forwarded_as_sent(self: TaskService, run: Any, message: Message,
                             forward: tuple[int, frozenset[str]], owner: Owner) -> None:
    # e70e586 tasks.py:253-270: the hops and visited set the sender chose, as they came.
    if self.forwarder is None or not message.text.strip():
        await run.reject("this node does not forward")
        return
    await run.working()
    hops, visited = forward
    try:
        data = await self.forwarder(message.text, hops, visited, deadline_of(message), owner)
    except MeshnodeError as exc:
        await run.fail(str(exc))
        return
    await run.complete(Artifact(artifact_id=str(uuid.uuid4()), name="answer",
                                parts=(TextPart(str(data.get("text", ""))), DataPart(data))))


def forwarded_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Asker, "answer_forwarded", _answer_forwarded_as_own)
    monkeypatch.setattr(TaskService, "_forwarded", _forwarded_as_sent)


def _settle_past_limit(self: Verdicts, now: float) -> None:
    # e70e586 asking.py:348-356: past KEPT_ANSWERS pending, the oldest counted as accepted.
    while self.answered:
        task_id, taken = next(iter(self.answered.items()))
        if now - taken.at < self.window_s() and len(self.answered) <= KEPT_ANSWERS:
            break
        del self.answered[task_id]
        self._verdict(taken, (Outcome.ACCEPTED,), now)
        self._learn(taken, "accepted")


def pending_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Verdicts, "settle", _settle_past_limit)


# ---- 2. peers read and cancel a node's tasks ---------------------------------------------


def _anyone_sees(self: Owner, owner: Owner) -> bool:
    return True  # e70e586: tasks had no owner; one store answered every caller


def tasks_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Owner, "may_see", _anyone_sees)


# ---- 6. task store exhaustion ------------------------------------------------------------


def _trim_oldest_by_count(self: TaskStore, owner: Owner) -> None:
    # e70e586 tasks.py:172-180: KEPT_TASKS tasks of any size, the oldest first whoever's it
    # is, and nothing dropped while the oldest still runs.
    while len(self._entries) > KEPT_TASKS:
        oldest = next(iter(self._entries))
        if self._entries[oldest].running:
            break
        self._drop(oldest)


def task_store_unweighed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskStore, "_trim", _trim_oldest_by_count)


def _admit_all(self: Quota, owner: Owner, running: Iterable[Owner]) -> None:
    pass  # e70e586 tasks.py:213-219: every task sent was run


def tasks_run_unbudgeted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Quota, "admit", _admit_all)


def _whole_page(request_id: str, tasks: tuple[Task, ...]) -> tuple[Task, ...]:
    return tasks  # e70e586 tasks.py:335: the page as it was, however big


def listing_in_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(a2a_tasks, "_fitting", _whole_page)


# ---- the entries -------------------------------------------------------------------------

TASKS = "tests/a2a/test_hostile_tasks_inmemory.py::"
FORWARDING = "tests/ask/test_hostile_forwarding_inmemory.py::"
CLIENTS = "tests/api/test_hostile_a2a_clients.py::"

REVERTS: tuple[Revert, ...] = (
    Revert(
        "forwarded-evidence", "1. trust farming and blame through forwarded questions",
        "asking.py:341-346 answered a forwarded question through Asker.ask like the "
        "operator's own, so its outcomes became evidence (asking.py:205, :320); "
        "tasks.py:253-263 forwarded with the hops and visited set the sender chose.",
        forwarded_evidence,
        (FORWARDING + "test_forwarded_questions_farm_no_trust",
         FORWARDING + "test_forwarded_questions_blame_no_one"),
    ),
    Revert(
        "pending-accepted", "1. trust farming (answers past the pending limit accepted)",
        "asking.py:348-356 counted the oldest pending answers as accepted at once when more "
        "than KEPT_ANSWERS (1000) were waiting, rating window or not.",
        pending_accepted,
        (FORWARDING + "test_answers_past_the_pending_limit_are_dropped_not_accepted",),
    ),
    Revert(
        "tasks-shared", "2. peers read and cancel a node's tasks",
        "tasks.py:182-203 and mesh_a2a.py:104-111 kept one task store with no owners: "
        "GetTask/ListTasks/CancelTask of any peer (tasks.py:330-337) or HTTP A2A client saw "
        "and cancelled every task, the operator's asks included.",
        tasks_shared,
        (TASKS + "test_a_peer_reads_no_one_elses_tasks",
         TASKS + "test_a_peer_cannot_cancel_the_operators_ask",
         CLIENTS + "test_anonymous_clients_see_only_their_own_tasks"),
    ),
    Revert(
        "task-store-unweighed", "6. task store exhaustion (histories kept)",
        "tasks.py:172-180 kept 1000 tasks of any size (histories up to 1 MiB each), "
        "dropping the oldest whoever's it was, and none while the oldest ran.",
        task_store_unweighed,
        (TASKS + "test_a_peer_cannot_fill_the_task_store",
         TASKS + "test_a_full_store_drops_the_strangers_tasks_first"),
    ),
    Revert(
        "tasks-run-unbudgeted", "6. task store exhaustion (running tasks)",
        "tasks.py:213-219 (and mesh_a2a.py:140-165 for HTTP clients) ran every task "
        "it was sent, however many the sender already had under way.",
        tasks_run_unbudgeted,
        (TASKS + "test_running_tasks_are_budgeted_per_peer_and_for_strangers",
         CLIENTS + "test_an_anonymous_client_has_a_budget_of_running_tasks"),
    ),
    Revert(
        "listing-in-one-frame", "6. task store exhaustion (a page of big tasks)",
        "tasks.py:335 answered ListTasks with the whole page in one result frame, which "
        "big histories push past the 1 MiB frame limit.",
        listing_in_one_frame,
        (TASKS + "test_a_listing_too_big_for_one_frame_is_cut_not_failed",),
    ),
)

# Hostile tests that check an honest path still works (nothing to revert), each with why.
NOT_ATTACKS: dict[str, str] = {
    FORWARDING + "test_the_operators_own_asks_still_make_evidence":
        "the honest path of finding 1: the operator's own asks must still make evidence "
        "(e70e586 did that too), so no defence here can be taken out to make it fail",
}
