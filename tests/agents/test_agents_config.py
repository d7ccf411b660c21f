"""meshnode.agents.specs: the [[agents]] parser, its template, the demo agents, skill texts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from meshnode.agents.specs import (
    _AGENT_KEYS,
    _SKILL_KEYS,
    AGENTS_TEMPLATE,
    DEFAULT_READS,
    AgentSpec,
    SkillSpec,
    agent_toml,
    agents_from_config,
    data_path,
    demo_agents,
    load_agents_file,
    skill_texts,
)
from meshnode.errors import ConfigError
from protocols.a2a import AgentCard, AgentSkill, card_from_wire, card_to_wire

WHERE = "cfg.toml: agents"

MINIMAL = """
[[agents]]
name = "helper"
description = "Helps."
[[agents.skills]]
name = "General Help!"
description = "Anything at all."
"""


def parse(text: str) -> tuple[AgentSpec, ...]:
    return agents_from_config(tomllib.loads(text).get("agents"), where=WHERE)


def test_minimal_agent_gets_sane_defaults() -> None:
    (agent,) = parse(MINIMAL)
    assert agent == AgentSpec(
        name="helper",
        description="Helps.",
        instructions="You are helper. Helps.",
        skills=(SkillSpec("general-help", "General Help!", "Anything at all.", (), ()),),
        reads=DEFAULT_READS,
        writes=True,
    )


def test_no_agents_is_fine() -> None:
    assert agents_from_config(None, where=WHERE) == ()
    assert agents_from_config([], where=WHERE) == ()


def test_every_key_parsed() -> None:
    text = """
[[agents]]
name = "ops"
description = "  Operations.  "
instructions = "Be careful."
reads = ["problem_solutions", "collaboration_history"]
writes = false
[[agents.skills]]
id = "sys.d"
name = "systemd"
description = "Units."
tags = ["systemd", " journald "]
examples = ["How do I restart a unit?"]
[[agents.skills]]
name = "Docker"
description = "Images."
"""
    (agent,) = parse(text)
    assert agent.description == "Operations."
    assert agent.instructions == "Be careful."
    assert agent.reads == ("problem_solutions", "collaboration_history")
    assert agent.writes is False
    assert agent.skills[0] == SkillSpec(
        "sys.d", "systemd", "Units.", ("systemd", "journald"), ("How do I restart a unit?",)
    )
    assert agent.skills[1].id == "docker"


def agent_with(extra: str = "", skill_extra: str = "", name: str = "a") -> str:
    return (
        f'[[agents]]\nname = "{name}"\ndescription = "d"\n{extra}\n'
        f'[[agents.skills]]\nname = "s"\ndescription = "d"\n{skill_extra}\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents]\nname = "x"', ": write each agent as an [[agents]] table, not [agents]"),
        ('agents = "x"', ": expected [[agents]] tables, got 'x'"),
        ('agents = ["x"]', "[0]: expected a table, got 'x'"),
        ('[[agents]]\ndescription = "d"', "[0].name: required"),
        (agent_with(name="bad name"), "[0].name: 'bad name' must start with a letter or digit"),
        (agent_with(name="-x"), "[0].name: '-x' must start with a letter or digit"),
        (agent_with(name="x" * 65), "[0].name: must be 1 to 64 characters, got 65"),
        (agent_with(name=""), "[0].name: must be 1 to 64 characters, got 0"),
        ('[[agents]]\nname = "a"\ndescription = 5', "[0].description: expected a string, got 5"),
        (agent_with('model = "gpt"'), "[0].model: unknown setting (known: consults, description, "),
        ('[[agents]]\nname = "a"\ndescription = "d"', "[0].skills: required (add at least one"),
        ('[[agents]]\nname = "a"\ndescription = "d"\nskills = []',
         "[0].skills: expected one or more [[agents.skills]] tables"),
        (agent_with(skill_extra='colour = "red"'), "[0].skills[0].colour: unknown setting"),
        ('[[agents]]\nname = "a"\ndescription = "d"\n[[agents.skills]]\nname = "s"',
         "[0].skills[0].description: required"),
        (agent_with(skill_extra='tags = "x"'), "[0].skills[0].tags: expected a list of strings"),
        (agent_with(skill_extra='tags = ["x", 3]'), "[0].skills[0].tags[1]: expected a string"),
        (agent_with(skill_extra='tags = ["x", " "]'), "[0].skills[0].tags[1]: must be 1 to 64"),
        (agent_with(skill_extra='id = "a b"'), "[0].skills[0].id: 'a b' must start"),
        (agent_with(skill_extra="examples = [" + '"q",' * 17 + "]"),
         "[0].skills[0].examples: at most 16 entries, got 17"),
        (agent_with('reads = ["notes"]'),
         "[0].reads[0]: unknown collection 'notes' (use expert_knowledge, "),
        (agent_with("reads = []"), "[0].reads: name at least one collection"),
        (agent_with('reads = ["expert_knowledge", "expert_knowledge"]'),
         "[0].reads: a collection is listed twice"),
        (agent_with('writes = "yes"'), "[0].writes: expected true or false, got 'yes'"),
        (agent_with(name="Python-Expert") + agent_with(name="python-expert"),
         "[1].name: 'python-expert' is already the name of cfg.toml: agents[0]"),
        (agent_with() + '[[agents.skills]]\nname = "s"\ndescription = "again"',
         "[0].skills[1].id: 's' is already the id of cfg.toml: agents[0].skills[0]"),
        ("".join(agent_with(name=f"a{i}") for i in range(33)), ": at most 32 agents per node"),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert str(caught.value).startswith(WHERE + message.removeprefix(WHERE))


def test_agents_template_is_commented_and_documents_every_key() -> None:
    assert tomllib.loads(AGENTS_TEMPLATE) == {}
    assert "{" not in AGENTS_TEMPLATE and "}" not in AGENTS_TEMPLATE  # str.format-safe
    example = AGENTS_TEMPLATE[AGENTS_TEMPLATE.index("# [[agents]]") :]
    uncommented = "\n".join(line.removeprefix("#").removeprefix(" ")
                            for line in example.splitlines())
    data = tomllib.loads(uncommented)
    (table,) = data["agents"]
    assert set(table) == set(_AGENT_KEYS)
    assert set(table["skills"][0]) == set(_SKILL_KEYS)
    (agent,) = agents_from_config(data["agents"], where=WHERE)
    assert agent.name == "python-expert"


def test_agent_toml_round_trips() -> None:
    for spec in demo_agents():
        text = agent_toml(spec)
        assert agents_from_config(tomllib.loads(text)["agents"], where=WHERE) == (spec,)


def test_demo_agents_are_three_experts_with_knowledge_bases() -> None:
    agents = demo_agents()
    assert [a.name for a in agents] == ["python-expert", "milvus-expert", "devops-expert"]
    for agent in agents:
        assert len(agent.skills) >= 2
        assert all(s.tags and s.examples for s in agent.skills)
        assert agent.reads == DEFAULT_READS and agent.writes
        kb = data_path("kb", agent.name.removesuffix("-expert"))
        assert 4 <= len(list(kb.glob("*.md"))) <= 6


def test_demo_knowledge_bases_are_real_markdown() -> None:
    for path in data_path("kb").rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# "), path
        assert len(re.findall(r"^## ", text, re.M)) >= 3, path
        assert 1500 < len(text) < 6000, path


def test_agents_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text('title = "x"\n' + MINIMAL, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agents.toml: title: unknown setting"):
        load_agents_file(path)
    path.write_text("[[agents]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agents.toml: "):
        load_agents_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_agents_file(tmp_path / "missing.toml")
    path.write_text(MINIMAL.replace('"helper"', '"bad name"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agents.toml: agents\[0\].name: 'bad name'"):
        load_agents_file(path)


def card_of(spec: AgentSpec) -> AgentCard:
    skills = tuple(AgentSkill(id=s.id, name=s.name, description=s.description, tags=s.tags,
                              examples=s.examples) for s in spec.skills)
    return AgentCard(name=spec.name, description=spec.description, version="1", skills=skills)


def test_skill_texts_describe_each_skill_of_a_card() -> None:
    milvus = demo_agents()[1]
    texts = skill_texts(card_of(milvus))
    assert len(texts) == len(milvus.skills)
    indexing = texts[[s.id for s in milvus.skills].index("milvus-indexing")]
    assert indexing.startswith("Vector indexes and search tuning. Index types FLAT")
    assert "HNSW" in indexing and "Which Milvus index should I use" in indexing
    bare = AgentCard(name="x", description="Does x.", version="1", skills=())
    assert skill_texts(bare) == ["x. Does x."]


def test_a_peer_card_renders_like_a_local_one() -> None:
    # Routing compares peers' agents (cards from presence, after the wire) with this node's.
    card = card_of(demo_agents()[0])
    assert skill_texts(card_from_wire(card_to_wire(card))) == skill_texts(card)
