"""The agents a node hosts: their specs (from the config), and the demo data.

An agent is an :class:`AgentSpec`: a name, a description, instructions for the LLM, the
skills it advertises (which the router embeds to judge relevance, see :func:`skill_texts`),
the memory collections it reads, and whether its accepted answers may be kept as
solutions by the nodes that asked.

How they answer questions is :mod:`meshnode.agents.answering`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from meshnode.errors import ConfigError
from meshnode.settings import (
    comment,
    documented,
    documented_fields,
    render_entry,
    setting,
    unknown,
)
from protocols.a2a import AgentCard
from protocols.records import COLLECTIONS, MAX_AGENT_LEN

# ---- specs ---------------------------------------------------------------------------------

DEFAULT_READS = ("expert_knowledge", "problem_solutions")
MAX_AGENTS = 32
MAX_SKILLS = 32
MAX_TAGS = 32
MAX_EXAMPLES = 16
MAX_DESCRIPTION = 1000
MAX_INSTRUCTIONS = 8000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


_NAMES = "letters, digits, '-', '_', '.'"


@dataclass(frozen=True, slots=True)
class SkillSpec:
    id: str = field(metadata=documented(
        f"Unique within the agent: {_NAMES} (default: from name).", example="python-packaging"))
    name: str = field(metadata=documented("", example="Python packaging"))
    description: str = field(metadata=documented(
        "", example="Virtual environments, pip, pyproject.toml, building and publishing."))
    tags: tuple[str, ...] = setting(
        (), "Keywords and sample questions; the router compares questions with all of these.",
        example=["python", "pip", "venv", "pyproject"])
    examples: tuple[str, ...] = setting(
        (), "", example=["Why does pip say externally-managed-environment?"])


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str = field(metadata=documented(
        f"Unique on this node: {_NAMES} (at most {MAX_AGENT_LEN} characters).",
        example="python-expert"))
    description: str = field(metadata=documented(
        "What this agent is good at, in one or two sentences (shown in its agent card).",
        example="Answers questions about Python packaging, typing, testing and concurrency."))
    instructions: str = field(metadata=documented(
        "Guidance given to the LLM before every question (optional; default from "
        "description).", example="You are a senior Python engineer. Answer precisely and briefly."))
    skills: tuple[SkillSpec, ...] = field(metadata=documented(
        "What the agent is good at, one [[agents.skills]] table each (at least one)."))
    reads: tuple[str, ...] = setting(
        DEFAULT_READS, f"Memory collections the agent answers from: any of "
        f"{', '.join(COLLECTIONS)} (default: {' and '.join(DEFAULT_READS)}).")
    writes: bool = setting(
        True, "Whether a node that asked this agent and accepted its answer may keep the "
        "answer as a solution in shared memory (signed by that node, not by this one).")
    consults: tuple[str, ...] = setting(
        (), "Agents of the mesh (by name) this agent may consult on a part of a question that "
        "is their field rather than its own, sharing what it retrieved (default: none).",
        example=[])
    handler: str = setting(
        "", "An agent in code instead of the built-in answering: 'package.module:object', a "
        "meshnode.Agent or an async function of a meshnode.Context. name, description and "
        "skills may then come from the object.", example="")
    url: str = setting(
        "", "An existing A2A server (v1.0 or v0.3) to bring onto the mesh instead: its base "
        "URL (its card is read from /.well-known/agent-card.json). description and skills "
        "come from that card.", example="")
    token: str = setting(
        "", "Bearer token for that A2A server, if it wants one.", example="", repr=False)

    @property
    def kind(self) -> str:
        """How the agent answers: "builtin" (retrieval + LLM), "code" or "remote"."""
        return "code" if self.handler else "remote" if self.url else "builtin"


_INTRO = (
    "Agents hosted by this node: one [[agents]] table each, with its skills as "
    '[[agents.skills]] tables below it. Remove the leading "# " of a block to use it. With no '
    "agents the node still routes questions to the rest of the mesh."
)
_NESTED = {"skills": ("agents.skills", SkillSpec)}
#: The commented ``[[agents]]`` example at the end of the config template.
AGENTS_TEMPLATE = "\n".join(
    [*comment(_INTRO), "#"]
    + [f"# {line}" if line else "#" for line in render_entry("agents", AgentSpec, _NESTED)]
) + "\n"


def agent_toml(spec: AgentSpec) -> str:
    """``spec`` as an ``[[agents]]`` table (with its skills) for a config file."""
    return "\n".join(render_entry("agents", spec, _NESTED)) + "\n"
_AGENT_KEYS = tuple(documented_fields(AgentSpec))
_SKILL_KEYS = tuple(documented_fields(SkillSpec))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:MAX_AGENT_LEN] or "skill"


class _Table:
    """Typed access to one TOML table; every error names the key by its full path."""

    def __init__(self, data: Any, where: str, known: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {_shown(data)}")
        self.data = data
        self.where = where
        allowed = set(known)
        for key in data:
            if key not in allowed:
                raise unknown(where, key, sorted(allowed))

    def text(
        self, key: str, *, max_len: int, default: str | None = None, pattern: bool = False,
        empty: bool = False,
    ) -> str:
        """``empty``: an empty string means "not set" (keys whose template value is "")."""
        where = f"{self.where}.{key}"
        if key not in self.data:
            if default is None:
                raise ConfigError(f"{where}: required")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
        value = value.strip()
        if empty and not value:
            return ""
        if not 1 <= len(value) <= max_len:
            raise ConfigError(f"{where}: must be 1 to {max_len} characters, got {len(value)}")
        if pattern and not _NAME.fullmatch(value):
            raise ConfigError(
                f"{where}: {value!r} must start with a letter or digit and contain only "
                "letters, digits, '-', '_' and '.'"
            )
        return value

    def texts(
        self, key: str, *, max_items: int, max_len: int, default: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        where = f"{self.where}.{key}"
        if key not in self.data:
            return default
        values = self.data[key]
        if not isinstance(values, list):
            raise ConfigError(f"{where}: expected a list of strings, got {_shown(values)}")
        if len(values) > max_items:
            raise ConfigError(f"{where}: at most {max_items} entries, got {len(values)}")
        out: list[str] = []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise ConfigError(f"{where}[{i}]: expected a string, got {_shown(value)}")
            if not 1 <= len(value.strip()) <= max_len:
                raise ConfigError(f"{where}[{i}]: must be 1 to {max_len} characters")
            out.append(value.strip())
        return tuple(out)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key}: expected true or false, got {_shown(value)}")
        return value


def _repeat(keys: Iterable[str]) -> tuple[int, int] | None:
    """(index, index of its first occurrence) of the first key seen twice; None if none is."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            return i, seen[key]
        seen[key] = i
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _skill(data: Any, where: str) -> SkillSpec:
    t = _Table(data, where, _SKILL_KEYS)
    name = t.text("name", max_len=100)
    return SkillSpec(
        id=t.text("id", max_len=MAX_AGENT_LEN, default=_slug(name), pattern=True),
        name=name,
        description=t.text("description", max_len=MAX_DESCRIPTION),
        tags=t.texts("tags", max_items=MAX_TAGS, max_len=64),
        examples=t.texts("examples", max_items=MAX_EXAMPLES, max_len=500),
    )


_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def _skills(raw_skills: Any, where: str) -> tuple[SkillSpec, ...]:
    if raw_skills is None:
        raise ConfigError(f"{where}.skills: required (add at least one [[agents.skills]] table)")
    if not isinstance(raw_skills, list) or not raw_skills:
        raise ConfigError(f"{where}.skills: expected one or more [[agents.skills]] tables")
    if len(raw_skills) > MAX_SKILLS:
        raise ConfigError(f"{where}.skills: at most {MAX_SKILLS} skills, got {len(raw_skills)}")
    skills = tuple(_skill(s, f"{where}.skills[{j}]") for j, s in enumerate(raw_skills))
    repeat = _repeat(skill.id for skill in skills)
    if repeat is not None:
        j, first = repeat
        raise ConfigError(
            f"{where}.skills[{j}].id: {skills[j].id!r} is already the id of "
            f"{where}.skills[{first}] (give each skill a distinct id)"
        )
    return skills


def _agent(data: Any, where: str) -> AgentSpec:
    t = _Table(data, where, _AGENT_KEYS)
    handler = t.text("handler", max_len=300, default="", empty=True)
    url = t.text("url", max_len=2048, default="", empty=True)
    if handler and url:
        raise ConfigError(f"{where}: an agent has a handler or a url, not both")
    if url and not _URL.fullmatch(url):
        raise ConfigError(f"{where}.url: {url!r} is not an http:// or https:// URL")
    name = t.text("name", max_len=MAX_AGENT_LEN, pattern=True, default="" if handler else None)
    # An agent in code may declare its card itself; an A2A server's card is read from it.
    card_elsewhere = bool(handler or url)
    description = t.text("description", max_len=MAX_DESCRIPTION,
                         default="" if card_elsewhere else None)
    instructions = t.text(
        "instructions", max_len=MAX_INSTRUCTIONS, default=f"You are {name}. {description}"
    )
    consults = t.texts("consults", max_items=MAX_AGENTS, max_len=MAX_AGENT_LEN)
    token = t.text("token", max_len=4096, default="", empty=True)
    raw_skills = data.get("skills")
    skills: tuple[SkillSpec, ...] = ()
    if raw_skills is not None or not card_elsewhere:
        skills = _skills(raw_skills, where)
    if url and (consults or skills):
        raise ConfigError(f"{where}: an A2A server's skills come from its card, and it "
                          "consults no one (drop skills and consults)")
    reads = t.texts("reads", max_items=len(COLLECTIONS), max_len=64, default=DEFAULT_READS)
    if not reads:
        raise ConfigError(f"{where}.reads: name at least one collection")
    for i, name_ in enumerate(reads):
        if name_ not in COLLECTIONS:
            raise ConfigError(
                f"{where}.reads[{i}]: unknown collection {name_!r} (use {', '.join(COLLECTIONS)})"
            )
    if _repeat(reads) is not None:
        raise ConfigError(f"{where}.reads: a collection is listed twice")
    return AgentSpec(name, description, instructions, skills, reads, t.flag("writes", True),
                     consults=consults, handler=handler, url=url, token=token)


def agents_from_config(tables: Any, *, where: str) -> tuple[AgentSpec, ...]:
    """Parse the ``[[agents]]`` array of tables (``tables`` is its TOML value; None means no
    agents). ``where`` prefixes every error, e.g. ``"/home/n/config.toml: agents"``."""
    if tables is None:
        return ()
    if isinstance(tables, dict):
        raise ConfigError(f"{where}: write each agent as an [[agents]] table, not [agents]")
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: expected [[agents]] tables, got {_shown(tables)}")
    if len(tables) > MAX_AGENTS:
        raise ConfigError(f"{where}: at most {MAX_AGENTS} agents per node, got {len(tables)}")
    agents = tuple(_agent(data, f"{where}[{i}]") for i, data in enumerate(tables))
    repeat = _repeat(agent.name.casefold() or str(i) for i, agent in enumerate(agents))
    if repeat is not None:
        i, first = repeat
        raise ConfigError(
            f"{where}[{i}].name: {agents[i].name!r} is already the name of {where}[{first}]"
            " (agent names are unique per node, ignoring case)"
        )
    return agents


def load_agents_file(path: Path) -> tuple[AgentSpec, ...]:
    """Agents from a TOML file holding only ``[[agents]]`` tables (like the demo's)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    extra = sorted(set(data) - {"agents"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]}: unknown setting (only [[agents]] belongs here)")
    return agents_from_config(data.get("agents", []), where=f"{path}: agents")


def data_path(*parts: str) -> Path:
    """A file or folder shipped in ``meshnode/data`` (the demo agents and knowledge bases)."""
    return Path(str(resources.files("meshnode").joinpath("data", *parts)))


def demo_agents() -> tuple[AgentSpec, ...]:
    """The demo's expert agents; each one's knowledge base is ``data_path("kb", topic)``
    where topic is the part of its name before ``-expert`` (python, milvus, devops)."""
    return load_agents_file(data_path("demo_agents.toml"))


def skill_texts(card: AgentCard) -> list[str]:
    """What the router embeds to judge how relevant an agent is to a question: one text per
    skill (name, description, tags, examples); an agent without skills is described by its
    own description. It reads an :class:`AgentCard`, so this node's agents (whose cards are
    made from their specs) and every peer's (received in presence) are rendered alike."""
    texts = [f"{s.name}. {s.description} {' '.join(s.tags)} {' '.join(s.examples)}"
             for s in card.skills]
    return texts or [f"{card.name}. {card.description}"]
