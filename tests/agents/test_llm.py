"""meshnode.agents.llm: settings from config and environment, and the real openai client against a
real (fake) OpenAI-compatible HTTP server, failures included."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import trio

from meshnode.agents.llm import LLM_TEMPLATE, LLMClient, LLMError, LLMSettings
from meshnode.errors import ConfigError
from tests.fakes.openai_server import FakeOpenAI

QUESTION = [{"role": "user", "content": "Passages: [1] one [2] two. Question: why?"}]


# ---- settings ------------------------------------------------------------------------------


def test_nothing_configured_means_no_llm() -> None:
    settings = LLMSettings.from_env_and_config(None, env={})
    assert not settings.configured
    assert settings.base_url is None and settings.api_key is None
    assert "not configured" in settings.describe()


def test_environment_is_the_fallback() -> None:
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://localhost:8000/v1",
           "OPENAI_MODEL": "llama3"}
    settings = LLMSettings.from_env_and_config({}, env=env)
    assert settings.configured
    assert (settings.base_url, settings.api_key, settings.model) == (
        "http://localhost:8000/v1", "sk-env", "llama3"
    )
    # The meshnode-specific variables win over the OpenAI ones.
    env |= {"MESHNODE_LLM_MODEL": "qwen2.5", "MESHNODE_LLM_BASE_URL": "http://h:1/v1"}
    settings = LLMSettings.from_env_and_config({}, env=env)
    assert (settings.model, settings.base_url) == ("qwen2.5", "http://h:1/v1")


def test_config_wins_over_environment_and_a_url_alone_is_enough() -> None:
    table = {"base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2", "timeout_s": 5,
             "max_tokens": 64}
    settings = LLMSettings.from_env_and_config(table, env={"OPENAI_MODEL": "gpt-x"})
    assert settings.configured and settings.api_key is None
    assert settings.model == "llama3.2"
    assert settings.timeout_s == 5.0 and isinstance(settings.timeout_s, float)
    assert settings.max_tokens == 64
    assert "without an API key" in settings.describe()


def test_only_a_key_means_openai_with_the_default_model() -> None:
    settings = LLMSettings.from_env_and_config(None, env={"OPENAI_API_KEY": "sk-1"})
    assert settings.configured and settings.base_url is None
    assert settings.model == "gpt-4o-mini"


def test_disabled_forces_extractive_answers() -> None:
    settings = LLMSettings.from_env_and_config({"enabled": False},
                                               env={"OPENAI_API_KEY": "sk-1"})
    assert not settings.configured


def test_the_key_never_shows() -> None:
    settings = LLMSettings(base_url=None, api_key="sk-secret-123", model="m")
    assert "sk-secret-123" not in repr(settings)
    assert "sk-secret-123" not in settings.describe()


def test_template_holds_every_setting_with_its_default() -> None:
    import tomllib

    table = tomllib.loads(LLM_TEMPLATE)["llm"]
    settings = LLMSettings.from_env_and_config(table, env={})
    assert settings == LLMSettings(base_url=None)
    assert set(table) == {"enabled", "base_url", "api_key", "model", "timeout_s", "max_tokens",
                          "temperature", "concurrency", "max_retries"}
    assert "{" not in LLM_TEMPLATE  # safe inside a str.format template


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"modle": "x"}, "cfg: llm.modle: unknown setting"),
        ({"timeout_s": "10"}, "cfg: llm.timeout_s: expected float, got '10'"),
        ({"max_tokens": True}, "cfg: llm.max_tokens: expected int"),
        ({"enabled": "yes"}, "cfg: llm.enabled: expected bool"),
        ({"base_url": "localhost:8000"}, "cfg: llm.base_url 'localhost:8000': must start"),
        ({"timeout_s": 0}, "cfg: llm.timeout_s: must be a number of seconds"),
        ({"timeout_s": float("inf")}, "cfg: llm.timeout_s"),
        ({"max_tokens": 0}, "cfg: llm.max_tokens: must be in"),
        ({"temperature": 3.0}, "cfg: llm.temperature: must be in 0..2"),
        ({"concurrency": 0}, "cfg: llm.concurrency"),
        ({"max_retries": 9}, "cfg: llm.max_retries"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LLMSettings.from_env_and_config(table, env={}, where="cfg: llm")
    assert str(caught.value).startswith(message)


def test_a_bad_environment_value_says_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^llm.base_url 'localhost:1'.*variable OPENAI_BASE_URL"):
        LLMSettings.from_env_and_config(None, env={"OPENAI_BASE_URL": "localhost:1"})


def test_config_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"^llm: expected a table"):
        LLMSettings.from_env_and_config(["x"], env={})  # type: ignore[arg-type]


# ---- the client ----------------------------------------------------------------------------


def test_a_client_needs_an_endpoint() -> None:
    with pytest.raises(LLMError) as caught:
        LLMClient(LLMSettings(base_url=None))
    assert caught.value.kind == "unavailable"


async def test_chat_sends_a_real_openai_request(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    client = LLMClient(llm_settings)
    try:
        reply = await client.chat(QUESTION, timeout=5)
    finally:
        client.close()
    assert reply == "According to the passages, here is the answer [1][2]."
    (request,) = fake_openai.chat_requests
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body["model"] == "fake-model"
    assert request.body["messages"] == QUESTION
    assert request.body["max_tokens"] == 512
    assert not request.body.get("stream")


async def test_rate_limit_is_retried_once_then_reported(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    fake_openai.mode = "rate_limit"
    client = LLMClient(llm_settings)
    with pytest.raises(LLMError) as caught:
        await client.chat(QUESTION, timeout=5)
    assert caught.value.kind == "rate_limited"
    assert "rate limit" in str(caught.value)
    assert len(fake_openai.chat_requests) == 1 + llm_settings.max_retries


async def test_a_passing_rate_limit_is_absorbed(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    fake_openai.mode = "rate_limit"
    fake_openai.fail_times = 1
    reply = await LLMClient(llm_settings).chat(QUESTION, timeout=5)
    assert "[1][2]" in reply
    assert len(fake_openai.chat_requests) == 2


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    fake_openai.mode = "rate_limit"
    fake_openai.retry_after = "30"
    started = trio.current_time()
    with pytest.raises(LLMError) as caught:
        await LLMClient(llm_settings).chat(QUESTION, timeout=3)
    assert caught.value.kind == "rate_limited"
    assert trio.current_time() - started < 3
    assert len(fake_openai.chat_requests) == 1


@pytest.mark.parametrize(
    ("mode", "kind", "words", "attempts"),
    [
        ("server_error", "unavailable", "HTTP 500", 2),
        ("auth", "auth", "HTTP 401", 1),
        ("not_found", "unavailable", "no model 'fake-model'", 1),
        ("malformed", "bad_response", "malformed response", 1),
        ("no_choices", "bad_response", "no choices", 1),
    ],
)
async def test_failures_become_one_error_class(
    fake_openai: FakeOpenAI,
    llm_settings: LLMSettings,
    mode: str,
    kind: str,
    words: str,
    attempts: int,
) -> None:
    fake_openai.mode = mode
    with pytest.raises(LLMError) as caught:
        await LLMClient(llm_settings).chat(QUESTION, timeout=5)
    assert caught.value.kind == kind
    assert words in str(caught.value)
    assert fake_openai.base_url in str(caught.value)  # says which endpoint failed
    assert len(fake_openai.chat_requests) == attempts


async def test_a_slow_server_times_out_within_the_deadline(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    fake_openai.mode = "slow"
    fake_openai.delay_s = 30
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        await LLMClient(llm_settings).chat(QUESTION, timeout=1.0)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    # A bound, not a speed measurement: the call must not outlive its deadline by much.
    assert 0.9 <= elapsed < 1.0 + 2.0
    assert len(fake_openai.chat_requests) == 1  # a timeout is not retried


async def test_the_configured_timeout_caps_the_callers(fake_openai: FakeOpenAI) -> None:
    fake_openai.mode = "slow"
    fake_openai.delay_s = 30
    settings = LLMSettings(base_url=fake_openai.base_url, api_key="k", model="m", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(LLMError, match="deadline"):
        await LLMClient(settings).chat(QUESTION, timeout=60)
    assert time.monotonic() - started < 0.5 + 2.0


async def test_cancelling_the_caller_does_not_wait_for_the_thread(
    fake_openai: FakeOpenAI, llm_settings: LLMSettings
) -> None:
    fake_openai.mode = "slow"
    fake_openai.delay_s = 30
    started = time.monotonic()
    with trio.move_on_after(0.3) as scope:
        await LLMClient(llm_settings).chat(QUESTION, timeout=10)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 0.3 + 2.0


async def test_no_time_left_fails_at_once(llm_settings: LLMSettings) -> None:
    with pytest.raises(LLMError) as caught:
        await LLMClient(llm_settings).chat(QUESTION, timeout=0)
    assert caught.value.kind == "timeout"


async def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", model="m",
                           max_retries=0)
    with pytest.raises(LLMError) as caught:
        await LLMClient(settings).chat(QUESTION, timeout=5)
    assert caught.value.kind == "unavailable"
    assert "cannot reach" in str(caught.value)
