"""The LLM client: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp).

:class:`LLMSettings` says where the endpoint is (the ``[llm]`` config table, falling back to
the usual environment variables); with neither a base URL nor an API key the LLM is "not
configured" and agents answer extractively from memory instead. :class:`LLMClient` wraps the
blocking ``openai.OpenAI`` client for trio: every call runs in a worker thread under a
``CapacityLimiter``, has a hard deadline, and fails with one exception class,
:class:`LLMError`, whose ``kind`` says what went wrong.

Retries are done here rather than by the openai client, so that they respect the caller's
deadline: a rate limit or an unavailable server is retried (``max_retries`` times) only if
the wait it asks for still fits before the deadline.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
import trio

from meshnode.errors import ConfigError, MeshnodeError

log = logging.getLogger(__name__)

LLMErrorKind = Literal["timeout", "rate_limited", "unavailable", "bad_response", "auth"]
DEFAULT_MODEL = "gpt-4o-mini"
#: Environment variables read when the config leaves a setting empty, first match wins.
ENV_BASE_URL = ("MESHNODE_LLM_BASE_URL", "OPENAI_BASE_URL")
ENV_API_KEY = ("MESHNODE_LLM_API_KEY", "OPENAI_API_KEY")
ENV_MODEL = ("MESHNODE_LLM_MODEL", "OPENAI_MODEL")
#: The longest wait between two attempts, whatever the server's Retry-After says.
MAX_BACKOFF_S = 10.0
#: Extra time given to a worker thread past the HTTP timeout before it is abandoned.
_GRACE_S = 0.5

LLM_TEMPLATE = """\
[llm]
# The chat model agents use to write answers, on any OpenAI-compatible endpoint (OpenAI,
# vLLM, Ollama, llama.cpp). With no base URL and no API key (here or in the environment)
# no LLM is configured: agents still answer, extractively from memory, and say so.
# false forces extractive answers even when OPENAI_API_KEY is set.
enabled = true
# Endpoint, e.g. "http://127.0.0.1:11434/v1" for Ollama. Empty: MESHNODE_LLM_BASE_URL,
# else OPENAI_BASE_URL, else OpenAI's own API (which needs a key).
base_url = ""
# Empty: MESHNODE_LLM_API_KEY, else OPENAI_API_KEY. Prefer the environment to this file.
api_key = ""
# Empty: MESHNODE_LLM_MODEL, else OPENAI_MODEL, else "gpt-4o-mini".
model = ""
# Longest time one answer may take, retries included (seconds).
timeout_s = 60.0
# Upper bound on the length of one answer (tokens).
max_tokens = 512
# Sampling temperature; low keeps answers close to the cited passages.
temperature = 0.2
# How many LLM calls this node runs at once; more wait their turn.
concurrency = 4
# Attempts after a rate limit (HTTP 429) or an unavailable server, within timeout_s.
max_retries = 1
"""


class LLMError(MeshnodeError):
    """A chat call failed; ``kind`` is timeout, rate_limited, unavailable, bad_response or auth."""

    def __init__(self, kind: LLMErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: LLMErrorKind = kind


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None
    api_key: str | None = field(default=None, repr=False)
    model: str = DEFAULT_MODEL
    timeout_s: float = 60.0
    max_tokens: int = 512
    temperature: float = 0.2
    concurrency: int = 4
    max_retries: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        _check_settings(self, "llm")

    @property
    def configured(self) -> bool:
        """Whether agents should call an LLM at all (else they answer extractively)."""
        return self.enabled and bool(self.base_url or self.api_key)

    def describe(self) -> str:
        """One line for status output; never shows the key."""
        if not self.configured:
            return "not configured (answers are extracted from memory)"
        where = self.base_url or "https://api.openai.com/v1"
        key = "with an API key" if self.api_key else "without an API key"
        return f"{self.model} at {where} ({key})"

    @classmethod
    def from_env_and_config(
        cls,
        table: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        where: str = "llm",
    ) -> LLMSettings:
        """Settings from the ``[llm]`` table (may be None or empty), each empty string
        falling back to the environment; ConfigError names the offending key."""
        environ = os.environ if env is None else env
        if table is not None and not isinstance(table, Mapping):
            raise ConfigError(f"{where}: expected a table [llm]")
        data = dict(table or {})
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _TYPES:
                raise ConfigError(f"{where}.{key}: unknown setting (known: {', '.join(_TYPES)})")
            values[key] = _typed(f"{where}.{key}", value, _TYPES[key])

        sources: dict[str, str] = {}

        def pick(key: str, names: tuple[str, ...]) -> str | None:
            configured = str(values.pop(key, "")).strip()
            if configured:
                return configured
            for name in names:
                if environ.get(name, "").strip():
                    sources[key] = name
                    return environ[name].strip()
            return None

        base_url = pick("base_url", ENV_BASE_URL)
        api_key = pick("api_key", ENV_API_KEY)
        model = pick("model", ENV_MODEL) or DEFAULT_MODEL
        try:
            return cls(base_url=base_url, api_key=api_key, model=model, **values)
        except ConfigError as exc:
            message = str(exc).replace("llm.", f"{where}.", 1)
            for key, name in sources.items():
                if message.startswith(f"{where}.{key}"):
                    message += f" (from the environment variable {name})"
            raise ConfigError(message) from None


_TYPES: dict[str, type] = {
    "enabled": bool,
    "base_url": str,
    "api_key": str,
    "model": str,
    "timeout_s": float,
    "max_tokens": int,
    "temperature": float,
    "concurrency": int,
    "max_retries": int,
}


def _typed(where: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not bool and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def _check_settings(s: LLMSettings, where: str) -> None:
    if s.base_url is not None and not s.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url {s.base_url!r}: must start with http:// or https://")
    if not s.model or len(s.model) > 256:
        raise ConfigError(f"{where}.model: must be 1..256 characters")
    if not (math.isfinite(s.timeout_s) and 0 < s.timeout_s <= 3600):
        raise ConfigError(f"{where}.timeout_s: must be a number of seconds in (0, 3600]")
    if not 1 <= s.max_tokens <= 1_000_000:
        raise ConfigError(f"{where}.max_tokens: must be in 1..1000000")
    if not (math.isfinite(s.temperature) and 0 <= s.temperature <= 2):
        raise ConfigError(f"{where}.temperature: must be in 0..2")
    if not 1 <= s.concurrency <= 64:
        raise ConfigError(f"{where}.concurrency: must be in 1..64")
    if not 0 <= s.max_retries <= 5:
        raise ConfigError(f"{where}.max_retries: must be in 0..5")


Message = Mapping[str, str]


class LLMClient:
    """Chat completions for trio code. Create one per node; it is safe to share."""

    def __init__(
        self, settings: LLMSettings, *, limiter: trio.CapacityLimiter | None = None
    ) -> None:
        if not settings.configured:
            raise LLMError("unavailable", "no LLM is configured (no base URL and no API key)")
        self.settings = settings
        self._limiter = limiter or trio.CapacityLimiter(settings.concurrency)
        self._client = openai.OpenAI(
            base_url=settings.base_url,
            # Local servers (Ollama, vLLM) accept any key; the client insists on one.
            api_key=settings.api_key or "unused",
            timeout=settings.timeout_s,
            max_retries=0,  # retried here, within the caller's deadline
        )

    @property
    def model(self) -> str:
        return self.settings.model

    def close(self) -> None:
        self._client.close()

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        timeout: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The assistant's reply to ``messages`` (role/content dicts).

        Returns within ``timeout`` seconds (at most the configured ``timeout_s``), or
        raises LLMError(kind="timeout"); every other failure is an LLMError too.
        """
        limit = self.settings.timeout_s
        budget = limit if timeout is None else min(timeout, limit)
        if not budget > 0:
            raise LLMError("timeout", "no time left to ask the LLM")
        deadline = trio.current_time() + budget
        request = {
            "model": self.settings.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature,
        }
        attempt = 0
        while True:
            try:
                return await self._attempt(request, deadline, budget)
            except _Retryable as retry:
                error, wait = retry.error, retry.wait_s
            attempt += 1
            left = deadline - trio.current_time()
            if attempt > self.settings.max_retries or wait >= left - 0.1:
                raise error
            log.info("LLM call failed, retrying",
                     extra={"kind": error.kind, "wait_s": round(wait, 2), "attempt": attempt})
            await trio.sleep(wait)

    async def _attempt(self, request: dict[str, Any], deadline: float, budget: float) -> str:
        left = deadline - trio.current_time()
        if left <= 0:
            raise LLMError("timeout", self._timeout_message(budget))
        # The thread may wait for the limiter: it computes its HTTP timeout when it starts.
        call = functools.partial(self._call, request, time.monotonic() + left, budget)
        # The thread is abandoned at the deadline; the HTTP timeout ends it soon after,
        # and it keeps its limiter token until then, so abandoned calls cannot pile up.
        with trio.move_on_after(left + _GRACE_S):
            return await trio.to_thread.run_sync(
                call, limiter=self._limiter, abandon_on_cancel=True
            )
        raise LLMError("timeout", self._timeout_message(budget))

    def _timeout_message(self, budget: float) -> str:
        where = self.settings.base_url or "api.openai.com"
        return (f"the LLM ({self.settings.model} at {where}) did not answer within the "
                f"deadline of {budget:.1f} s")

    def _call(self, request: dict[str, Any], deadline: float, budget: float) -> str:
        """Blocking: one HTTP request, its errors translated."""
        where = self.settings.base_url or "api.openai.com"
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise LLMError("timeout", self._timeout_message(budget))
        try:
            response = self._client.chat.completions.create(**request, timeout=timeout)
        except openai.APITimeoutError:
            raise LLMError("timeout", self._timeout_message(budget)) from None
        except openai.APIConnectionError as exc:
            raise _Retryable(
                LLMError("unavailable", f"cannot reach the LLM at {where}: {exc}"), 0.5
            ) from None
        except openai.RateLimitError as exc:
            raise _Retryable(
                LLMError("rate_limited", f"the LLM at {where} is rate limiting us: "
                         f"{_detail(exc)}"),
                _retry_after(exc.response.headers),
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise LLMError(
                "auth", f"the LLM at {where} refused our credentials (HTTP {exc.status_code}): "
                f"{_detail(exc)}; check OPENAI_API_KEY or llm.api_key"
            ) from None
        except openai.NotFoundError as exc:
            raise LLMError(
                "unavailable", f"the LLM at {where} has no model {self.settings.model!r} "
                f"or no chat endpoint (HTTP 404): {_detail(exc)}"
            ) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise _Retryable(
                    LLMError("unavailable", f"the LLM at {where} failed (HTTP "
                             f"{exc.status_code}): {_detail(exc)}"),
                    _retry_after(exc.response.headers, default=0.5),
                ) from None
            raise LLMError(
                "bad_response", f"the LLM at {where} rejected the request (HTTP "
                f"{exc.status_code}): {_detail(exc)}"
            ) from None
        except openai.OpenAIError as exc:
            raise LLMError("bad_response", f"the LLM at {where} answered badly: {exc}") from None
        except ValueError as exc:  # a body that is not JSON, or JSON of the wrong shape
            raise LLMError(
                "bad_response", f"the LLM at {where} sent a malformed response: {exc}"
            ) from None
        return _reply_text(response, where)


class _Retryable(Exception):
    """Internal: an LLMError worth another attempt after ``wait_s`` seconds."""

    def __init__(self, error: LLMError, wait_s: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_s = wait_s


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:300]
    return str(exc.message)[:300]


def _retry_after(headers: Mapping[str, str], default: float = 1.0) -> float:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) * scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_BACKOFF_S)
    return default


def _reply_text(response: Any, where: str) -> str:
    """The first choice's text; anything else is a bad response (lenient servers vary)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise LLMError("bad_response", f"the LLM at {where} returned no choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str) or not content.strip():
        raise LLMError("bad_response", f"the LLM at {where} returned an empty answer")
    return content.strip()
