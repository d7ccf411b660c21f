"""A real OpenAI-compatible HTTP server for tests: stdlib ``http.server`` in a thread.

    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k")
        server.mode = "rate_limit"
        ...
        server.requests  # every request received, parsed

It serves ``POST /v1/chat/completions`` (plain and streaming) and ``POST /v1/embeddings``.
A chat reply is ``server.reply`` if set (a string, or a function of the request body), else a
faithful answer: for each numbered passage of the last user message (opened by a
``<<passage [n] ...>>`` line), its first sentence, quoted and cited ``[n]``; with no such
passages, a canned sentence citing every marker ``[n]`` found. So citation handling and the
askers' checks can be tested end to end. ``server.mode`` switches failures:

- ``ok``: normal answers;
- ``rate_limit``: HTTP 429 with ``Retry-After: server.retry_after``;
- ``server_error``: HTTP 500; ``auth``: HTTP 401; ``not_found``: HTTP 404;
- ``malformed``: HTTP 200 whose body is not JSON; ``no_choices``: valid JSON, no choices;
- ``slow``: waits ``server.delay_s`` before answering (woken early when the server stops).

``server.fail_times = n`` makes only the next ``n`` requests fail, then mode ``ok`` resumes.
``server.embeddings_mode``, when set, is the mode of ``/v1/embeddings`` requests instead
(an embeddings outage while chat still works, say). ``server.max_input_chars``, when set,
makes ``/v1/embeddings`` refuse (HTTP 400, ``context_length_exceeded``, as OpenAI does) any
request with a longer input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MODES = ("ok", "rate_limit", "server_error", "auth", "not_found", "malformed", "no_choices",
         "slow")
_MARKER = re.compile(r"\[(\d+)\]")
# A passage opens with a "<<passage [n] TAG ...>>" line (meshnode.agents.answering) and
# ends at its "<<end of passage [n] TAG>>" line.
_PASSAGE = re.compile(r"^<<passage \[(\d+)\][^\n]*\n", re.M)
_PASSAGE_END = "<<end of passage"
_FIRST_SENTENCE = re.compile(r"[A-Z`][^.!?\n]{15,}?[.!?](?=\s|$)")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


def default_reply(body: dict[str, Any]) -> str:
    """A faithful answer quoting each numbered passage of the last user message, else a
    canned one citing every marker found."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    text = str(users[-1].get("content", "")) if users else ""
    passages = list(_PASSAGE.finditer(text))
    quotes = []
    for found in passages:
        end = text.find(_PASSAGE_END, found.end())
        body_text = " ".join(ln for ln in text[found.end():end].splitlines()
                             if ln.strip() and not ln.lstrip().startswith(("#", "```")))
        sentence = _FIRST_SENTENCE.search(body_text)
        if sentence is not None:
            quotes.append(f"{sentence.group(0)} [{found.group(1)}]")
    if quotes:
        return " ".join(quotes)
    markers = sorted({int(n) for n in _MARKER.findall(text)})
    if not markers:
        return "I do not know: no passages were given."
    cited = "".join(f"[{n}]" for n in markers)
    return f"According to the passages, here is the answer {cited}."


class FakeOpenAI:
    def __init__(self, *, embedding_dim: int = 16) -> None:
        self.mode = "ok"
        self.reply: str | Callable[[dict[str, Any]], str] | None = None
        self.delay_s = 5.0
        self.retry_after = "0"
        self.fail_times: int | None = None
        self.embeddings_mode: str | None = None
        self.max_input_chars: int | None = None
        self.model = "fake-model"
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # wakes slow handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "use 'with FakeOpenAI() as server'"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- used by the handler ----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> str:
        """Store ``request`` and return the mode that applies to it."""
        with self._lock:
            self.requests.append(request)
            if self.embeddings_mode is not None and request.path == "/v1/embeddings":
                return self.embeddings_mode
            if self.fail_times is None:
                return self.mode
            if self.fail_times > 0:
                self.fail_times -= 1
                return self.mode
            return "ok"

    def _reply_for(self, body: dict[str, Any]) -> str:
        reply = self.reply
        if reply is None:
            return default_reply(body)
        return reply if isinstance(reply, str) else reply(body)

    def _wait(self) -> None:
        self._stopping.wait(self.delay_s)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        mode = self.fake._record(
            RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if not path.startswith("/v1/") or path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._error(404, f"no route {path}", "not_found")
            return
        if not isinstance(body, dict):
            self._error(400, "the body must be a JSON object", "invalid_request_error")
            return
        if mode == "slow":
            self.fake._wait()
        elif mode == "rate_limit":
            self._error(429, "Rate limit reached, slow down", "rate_limit_exceeded",
                        {"Retry-After": self.fake.retry_after})
            return
        elif mode == "server_error":
            self._error(500, "The server had an error", "server_error")
            return
        elif mode == "auth":
            self._error(401, "Incorrect API key provided", "invalid_api_key")
            return
        elif mode == "not_found":
            self._error(404, f"The model {body.get('model')!r} does not exist", "model_not_found")
            return
        elif mode == "malformed":
            self._send(200, b'{"id": "x", "choices": [ this is not json', "application/json")
            return
        if path == "/v1/embeddings":
            self._embeddings(body)
        elif body.get("stream"):
            self._stream(body)
        else:
            self._chat(body, no_choices=mode == "no_choices")

    # -- responses --------------------------------------------------------------------------

    def _send(
        self, status: int, payload: bytes, content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self.wfile.write(payload)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _error(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        error = {"message": message, "type": code, "param": None, "code": code}
        self._json(status, {"error": error}, headers)

    def _chat(self, body: dict[str, Any], *, no_choices: bool) -> None:
        text = self.fake._reply_for(body)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        self._json(200, {
            "id": f"chatcmpl-{len(self.fake.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.fake.model),
            "choices": [] if no_choices else [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()),
                      "total_tokens": 10 + len(text.split())},
        })

    def _stream(self, body: dict[str, Any]) -> None:
        text = self.fake._reply_for(body)
        words = text.split(" ")
        events = []
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            if i == 0:
                delta["role"] = "assistant"
            events.append({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                           "created": int(time.time()), "model": body.get("model"),
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        events.append({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                       "created": int(time.time()), "model": body.get("model"),
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, payload.encode(), "text/event-stream")

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        limit = self.fake.max_input_chars
        if limit is not None and any(len(str(t)) > limit for t in texts):
            self._error(400, f"This model's maximum context length is {limit} characters, "
                        "however you requested more.", "context_length_exceeded")
            return
        data = [
            {"object": "embedding", "index": i, "embedding": self._vector(str(t))}
            for i, t in enumerate(texts)
        ]
        self._json(200, {"object": "list", "data": data, "model": body.get("model"),
                         "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})

    def _vector(self, text: str) -> list[float]:
        """Deterministic unit vector: equal texts get equal vectors."""
        dim = self.fake.embedding_dim
        digest = b""
        counter = 0
        while len(digest) < dim:
            digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
            counter += 1
        raw = [b / 255.0 - 0.5 for b in digest[:dim]]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        return [x / norm for x in raw]
