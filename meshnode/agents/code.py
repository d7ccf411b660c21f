"""Agents in code: the public API for an agent whose answer is your own async function.

    import meshnode

    async def answer(ctx: meshnode.Context) -> str:
        await ctx.progress("looking it up")
        passages = await ctx.memory.search(ctx.question, k=3)
        return passages[0].text if passages else "I don't know."

    agent = meshnode.Agent(
        name="librarian", description="Quotes the mesh's memory.",
        skills=[meshnode.Skill("Quoting", "Finds the passage that answers a question.")],
        handler=answer,
    )

A node hosts it from its config (``[[agents]]`` with ``handler = "package.module:agent"``)
or from a program (``meshnode.run_node(home, agents=[agent])``). The handler gets a
:class:`Context` (the question, its conversation, who asked, the deadline; progress and
artifacts streamed to the asker; the mesh's memory; other agents to consult) and returns
the answer: a string, or a :class:`Reply` with citations and data.

Failures stay in the task: :class:`AgentFailed` fails it with the reason the asker sees; any
other exception fails it as an internal error (the details go to this node's log, not to
the asker); the deadline cancels the handler and fails the task. The node goes on serving.
The handler runs on the node's trio event loop: blocking work (files, CPU-heavy tools)
belongs in ``trio.to_thread.run_sync``.

This module only describes the API; the node's task service implements the
:class:`Backend` behind each :class:`Context`.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from meshnode.agents.specs import MAX_DESCRIPTION, MAX_SKILLS, AgentSpec, SkillSpec
from meshnode.errors import ConfigError, MeshnodeError
from protocols.records import COLLECTIONS, MAX_AGENT_LEN, MAX_TEXT_BYTES

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Bounds on what one task's code may do with the mesh's memory.
MAX_SEARCH_K = 20
MAX_WRITES_PER_TASK = 16
_HANDLER_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class AgentFailed(MeshnodeError):
    """Raise it in an agent's code to fail the task with this reason, which the asker sees."""


@dataclass(frozen=True, slots=True)
class Skill:
    """What an agent is good at; routing compares questions with all of it."""

    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    id: str = ""

    def spec(self) -> SkillSpec:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:MAX_AGENT_LEN]
        return SkillSpec(id=self.id or slug or "skill", name=self.name,
                         description=self.description, tags=tuple(self.tags),
                         examples=tuple(self.examples))


@dataclass(frozen=True, slots=True)
class Passage:
    """A record of the mesh's memory: its id, text and author (a peer ID), the collection
    it is in, and how well it matched (``score``: the similarity of the search that found
    it, on this node's embedder)."""

    id: str
    text: str
    collection: str
    author: str
    score: float = 0.0
    kind: str = "note"
    agent: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer. What a handler may return instead of a bare string (to cite passages and
    attach data), and what :meth:`Context.ask` returns (then ``agent`` and ``peer`` say who
    answered)."""

    text: str
    citations: tuple[Passage, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    agent: str = ""
    peer: str = ""


Handler = Callable[["Context"], Awaitable["str | Reply"]]


class Backend(Protocol):
    """What the node does for a :class:`Context` (implemented by its task service)."""

    async def progress(self, text: str) -> None: ...

    async def artifact(self, name: str, text: str, data: Mapping[str, Any]) -> None: ...

    async def search(self, query: str, k: int, collection: str | None) -> list[Passage]: ...

    async def add(self, text: str, kind: str, collection: str,
                  meta: Mapping[str, str | int | float | bool]) -> str: ...

    async def ask(self, question: str, agent: str | None, timeout: float) -> Reply: ...


class Memory:
    """The mesh's shared memory as one task's code sees it (``ctx.memory``)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._writes = 0

    async def search(self, query: str, *, k: int = 5, collection: str | None = None
                     ) -> list[Passage]:
        """The ``k`` passages most similar to ``query``, best first (all collections, or
        one). They are shared with any agent this task consults."""
        if not 1 <= k <= MAX_SEARCH_K:
            raise ValueError(f"k must be in 1..{MAX_SEARCH_K}, got {k}")
        if collection is not None and collection not in COLLECTIONS:
            raise ValueError(f"unknown collection {collection!r}; use one of {COLLECTIONS}")
        return await self._backend.search(query[:MAX_TEXT_BYTES], k, collection)

    async def add(self, text: str, *, kind: str = "note", collection: str = "expert_knowledge",
                  meta: Mapping[str, str | int | float | bool] | None = None) -> str:
        """Write ``text`` to shared memory, signed by this node (replicated to the mesh);
        returns the record's id. At most a few writes per task."""
        if self._writes >= MAX_WRITES_PER_TASK:
            raise AgentFailed(f"an agent may write at most {MAX_WRITES_PER_TASK} records a task")
        if collection not in COLLECTIONS:
            raise ValueError(f"unknown collection {collection!r}; use one of {COLLECTIONS}")
        self._writes += 1
        return await self._backend.add(text, kind, collection, dict(meta or {}))


class Context:
    """One question put to an agent, and what its code can do while answering it."""

    def __init__(
        self,
        backend: Backend,
        *,
        question: str,
        context_id: str,
        asker: str,
        deadline: float,
        shared: Sequence[Passage] = (),
        depth: int = 0,
    ) -> None:
        self._backend = backend
        #: The question, as text.
        self.question = question
        #: The conversation this question belongs to (A2A context id); consulted agents
        #: get the same one.
        self.context_id = context_id
        #: The peer ID of the node that asked.
        self.asker = asker
        #: When the answer is due, on trio's clock (see :meth:`time_left`).
        self.deadline = deadline
        #: Passages that the agents which consulted this one had retrieved (signatures
        #: verified on receipt): reuse them instead of searching again.
        self.shared = tuple(shared)
        #: How deep in a consulting chain this question is (0: asked directly).
        self.depth = depth
        self.memory = Memory(backend)

    def time_left(self) -> float:
        """Seconds until the deadline."""
        return max(0.0, self.deadline - trio.current_time())

    async def progress(self, text: str) -> None:
        """Tell the asker how it is going (a working status with this message)."""
        await self._backend.progress(str(text)[:4096])

    async def artifact(self, name: str, *, text: str = "",
                       data: Mapping[str, Any] | None = None) -> None:
        """Stream an intermediate result to the asker (the answer itself is what the
        handler returns). ``data`` must be JSON-able."""
        await self._backend.artifact(str(name)[:256], text, dict(data or {}))

    async def ask(self, question: str, *, agent: str | None = None,
                  timeout: float | None = None) -> Reply:
        """Consult the mesh: the agent named ``agent``, or whichever the mesh routes the
        question to. Within this task's deadline (and ``timeout`` if shorter); the agent
        asked gets this conversation's context id and the passages this task retrieved.
        Raises :class:`meshnode.AskError` when no acceptable answer came."""
        left = self.time_left()
        wanted = left if timeout is None else min(max(0.0, timeout), left)
        if not math.isfinite(wanted):
            raise ValueError("timeout must be a finite number of seconds")
        return await self._backend.ask(question, agent, wanted)


@dataclass(frozen=True)
class Agent:
    """An agent in code: its card (name, description, skills) and its handler.

    ``instructions`` and ``reads`` matter only to the built-in answering and are kept for
    symmetry with ``[[agents]]`` tables.
    """

    name: str
    description: str
    skills: Sequence[Skill]
    handler: Handler

    def __post_init__(self) -> None:
        where = f"agent {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name) or len(
                self.name) > MAX_AGENT_LEN:
            raise ConfigError(f"{where}: a name is letters, digits, '-', '_' and '.', at most "
                              f"{MAX_AGENT_LEN} characters")
        if not 1 <= len(self.description) <= MAX_DESCRIPTION:
            raise ConfigError(f"{where}: description must be 1 to {MAX_DESCRIPTION} characters")
        if not 1 <= len(self.skills) <= MAX_SKILLS:
            raise ConfigError(f"{where}: give 1 to {MAX_SKILLS} skills")
        if not callable(self.handler):
            raise ConfigError(f"{where}: handler must be an async function of a Context")

    def spec(self) -> AgentSpec:
        """The agent as the node's other agents are described (its card comes from it)."""
        return AgentSpec(self.name, self.description, f"You are {self.name}. "
                         f"{self.description}", tuple(s.spec() for s in self.skills),
                         writes=False)


def load_handler(path: str) -> Agent | Handler:
    """The object named ``"package.module:attribute"``: an :class:`Agent`, or a bare
    handler (then the config gives the card). ConfigError if it cannot be imported."""
    if not _HANDLER_PATH.fullmatch(path):
        raise ConfigError(f"handler {path!r}: expected 'package.module:object'")
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ConfigError(f"handler {path!r}: cannot import {module_name}: {exc} (is it "
                          "installed, or on PYTHONPATH?)") from None
    except AttributeError:
        raise ConfigError(f"handler {path!r}: {module_name} has no {attribute}") from None
    if isinstance(obj, Agent) or callable(obj):
        return obj  # type: ignore[no-any-return]
    raise ConfigError(f"handler {path!r}: {type(obj).__name__} is neither a meshnode.Agent "
                      "nor an async function")
