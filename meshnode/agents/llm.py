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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from meshnode.errors import ConfigError, MeshnodeError
from meshnode.settings import check, documented_fields, read_table, render_section, setting, within

if TYPE_CHECKING:
    import openai

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

class LLMError(MeshnodeError):
    """A chat call failed; ``kind`` is timeout, rate_limited, unavailable, bad_response or auth.

    ``retry_after`` is set on a failure worth another attempt (a rate limit, a server that
    is down): the seconds to wait first. The client retries those itself, within the
    caller's deadline; what reaches the caller is the last failure.
    """

    def __init__(
        self, kind: LLMErrorKind, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind: LLMErrorKind = kind
        self.retry_after = retry_after


def _url(value: str | None) -> str | None:
    if value is None or value.startswith(("http://", "https://")):
        return None
    return f" {value!r}: must start with http:// or https://"


def _model(value: str) -> str | None:
    return None if 1 <= len(value) <= 256 else ": must be 1..256 characters"


def _timeout(value: float) -> str | None:
    if math.isfinite(value) and 0 < value <= 3600:
        return None
    return ": must be a number of seconds in (0, 3600]"


@dataclass(frozen=True)
class LLMSettings:
    """The ``[llm]`` table; validated when made, because the environment fills it too."""

    enabled: bool = setting(
        True, "false forces extractive answers even when OPENAI_API_KEY is set.")
    base_url: str | None = setting(
        None, 'Endpoint, e.g. "http://127.0.0.1:11434/v1" for Ollama. Empty: '
        "MESHNODE_LLM_BASE_URL, else OPENAI_BASE_URL, else OpenAI's own API (which needs a "
        "key).", env=ENV_BASE_URL, check=_url)
    api_key: str | None = setting(
        None, "Empty: MESHNODE_LLM_API_KEY, else OPENAI_API_KEY. Prefer the environment to "
        "this file.", env=ENV_API_KEY, repr=False)
    model: str = setting(
        DEFAULT_MODEL, f'Empty: MESHNODE_LLM_MODEL, else OPENAI_MODEL, else "{DEFAULT_MODEL}".',
        env=ENV_MODEL, check=_model)
    timeout_s: float = setting(
        60.0, "Longest time one answer may take, retries included (seconds).", check=_timeout)
    max_tokens: int = setting(512, "Upper bound on the length of one answer (tokens).",
                              check=within(1, 1_000_000))
    temperature: float = setting(
        0.2, "Sampling temperature; low keeps answers close to the cited passages.",
        check=within(0, 2))
    concurrency: int = setting(
        4, "How many LLM calls this node runs at once; more wait their turn.",
        check=within(1, 64))
    max_retries: int = setting(
        1, "Attempts after a rate limit (HTTP 429) or an unavailable server, within "
        "timeout_s.", check=within(0, 5))

    def __post_init__(self) -> None:
        check(self, "llm")

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
        values = read_table(cls, {} if table is None else table, where)
        sources: dict[str, str] = {}
        for key, (f, doc) in documented_fields(cls).items():
            if not doc.env:
                continue
            configured = str(values.pop(f.name, "") or "").strip()
            name = next((n for n in doc.env if environ.get(n, "").strip()), None)
            if configured:
                values[f.name] = configured
            elif name is not None:
                values[f.name] = environ[name].strip()
                sources[key] = name
        try:
            return cls(**values)
        except ConfigError as exc:
            message = str(exc).replace("llm.", f"{where}.", 1)
            for key, name in sources.items():
                if message.startswith(f"{where}.{key}"):
                    message += f" (from the environment variable {name})"
            raise ConfigError(message) from None


LLM_TEMPLATE = render_section(
    "llm", LLMSettings(), intro="The chat model agents use to write answers, on any "
    "OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp). With no base URL and no API "
    "key (here or in the environment) no LLM is configured: agents still answer, "
    "extractively from memory, and say so.")


Message = Mapping[str, str]


class LLMClient:
    """Chat completions for trio code. Create one per node; it is safe to share."""

    def __init__(
        self, settings: LLMSettings, *, limiter: trio.CapacityLimiter | None = None
    ) -> None:
        if not settings.configured:
            raise LLMError("unavailable", "no LLM is configured (no base URL and no API key)")
        import openai  # a second of start-up and some 15 MB: only for a node with an LLM

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
            except LLMError as failed:
                if failed.retry_after is None:
                    raise
                error, wait = failed, failed.retry_after
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
        import openai  # imported already (by __init__): a dictionary lookup

        where = self.settings.base_url or "api.openai.com"
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise LLMError("timeout", self._timeout_message(budget))
        try:
            response = self._client.chat.completions.create(**request, timeout=timeout)
        except openai.APITimeoutError:
            raise LLMError("timeout", self._timeout_message(budget)) from None
        except openai.APIConnectionError as exc:
            raise LLMError(
                "unavailable", f"cannot reach the LLM at {where}: {exc}", retry_after=0.5
            ) from None
        except openai.RateLimitError as exc:
            raise LLMError(
                "rate_limited", f"the LLM at {where} is rate limiting us: {_detail(exc)}",
                retry_after=_retry_after(exc.response.headers),
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
                raise LLMError(
                    "unavailable", f"the LLM at {where} failed (HTTP {exc.status_code}): "
                    f"{_detail(exc)}", retry_after=_retry_after(exc.response.headers, default=0.5),
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
