"""The public API of agents in code, the [[agents]] keys that bring agents in, and the
example calculator's tool."""

from __future__ import annotations

import tomllib
from fractions import Fraction

import pytest

import meshnode
from meshnode.agents.code import load_handler
from meshnode.agents.specs import agents_from_config
from meshnode.examples.calculator import agent as calculator
from meshnode.examples.calculator import evaluate, find_expression

WHERE = "cfg.toml: agents"


async def _handler(ctx: meshnode.Context) -> str:
    return "ok"


def test_the_facade_exports_the_public_api() -> None:
    for name in meshnode.__all__:
        assert getattr(meshnode, name) is not None
    assert issubclass(meshnode.AgentFailed, meshnode.MeshnodeError)
    assert issubclass(meshnode.AskError, meshnode.MeshnodeError)
    with pytest.raises(AttributeError):
        _ = meshnode.NoSuchThing  # type: ignore[attr-defined]


def test_an_agent_is_validated_and_described_as_a_spec() -> None:
    skill = meshnode.Skill("Word games", "Plays with words.", tags=("words",))
    agent = meshnode.Agent("wordy", "Plays with words.", [skill], _handler)
    spec = agent.spec()
    assert (spec.name, spec.skills[0].id, spec.writes) == ("wordy", "word-games", False)
    for bad in (dict(name="no spaces"), dict(name="x" * 65), dict(description=""),
                dict(skills=[]), dict(handler="not callable")):
        fields = {"name": "wordy", "description": "d", "skills": [skill],
                  "handler": _handler, **bad}
        with pytest.raises(meshnode.ConfigError):
            meshnode.Agent(**fields)  # type: ignore[arg-type]


def test_load_handler() -> None:
    assert load_handler("meshnode.examples.calculator:agent") is calculator
    assert load_handler("tests.agents.test_code_api:_handler") is _handler
    for path, said in (("no-colon", "expected 'package.module:object'"),
                       ("no_such_module_x:agent", "cannot import no_such_module_x"),
                       ("meshnode.examples.calculator:nothing", "has no nothing"),
                       ("meshnode.examples.calculator:MAX_DIGITS", "neither")):
        with pytest.raises(meshnode.ConfigError, match=said):
            load_handler(path)


def _agents(text: str) -> tuple[object, ...]:
    return agents_from_config(tomllib.loads(text)["agents"], where=WHERE)


def test_config_keys_for_agents_in_code_and_a2a_servers() -> None:
    (code,) = _agents('[[agents]]\nhandler = "meshnode.examples.calculator:agent"\n')
    assert code.kind == "code" and code.name == "" and code.skills == ()  # type: ignore[attr-defined]
    (remote,) = _agents('[[agents]]\nname = "currency"\nurl = "http://h:9999"\ntoken = "s3cret"\n')
    assert (remote.kind, remote.url, remote.token) == ("remote", "http://h:9999", "s3cret")  # type: ignore[attr-defined]
    assert "s3cret" not in repr(remote)  # the token stays out of logs
    (consulting,) = _agents('[[agents]]\nname = "a"\ndescription = "d"\n'
                            'consults = ["b"]\n[[agents.skills]]\nname = "s"\n'
                            'description = "d"\n')
    assert consulting.kind == "builtin" and consulting.consults == ("b",)  # type: ignore[attr-defined]
    for text, said in (
        ('[[agents]]\nhandler = "a:b"\nurl = "http://h"\n', "a handler or a url, not both"),
        ('[[agents]]\nname = "x"\nurl = "ftp://h"\n', "not an http"),
        ('[[agents]]\nurl = "http://h"\n', "name: required"),
        ('[[agents]]\nname = "x"\nurl = "http://h"\nconsults = ["y"]\n', "come from its card"),
        ('[[agents]]\nname = "x"\ndescription = "d"\n', "skills: required"),
    ):
        with pytest.raises(meshnode.ConfigError, match=said):
            _agents(text)


def test_the_calculator_tool() -> None:
    assert find_expression("What is 12 * (3 + 4)?") == "12 * (3 + 4)"
    assert find_expression("In 2023 I was 40") is None  # numbers, but no arithmetic
    assert evaluate("7/8 + 1/3") == Fraction(29, 24)
    assert evaluate("2^10 - 24") == 1000 and evaluate("-3 * -2") == 6
    for bad in ("2 ** 1000", "9 ** 64 ** 2", "1 / 0", "__import__('os')", "2 +", "x" * 300,
                "(10 ** 60) * (10 ** 60) * (10 ** 60) * (10 ** 60)"):
        with pytest.raises(ValueError):
            evaluate(bad)
