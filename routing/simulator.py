"""Provider simulator: a loopback HTTP server that speaks three providers' wire formats, with
faults switched on by the URL.

It is test and development infrastructure (STYLE.md: providers in tests are real HTTP servers
that speak the provider's wire format), so the adapters are exercised through real sockets,
real status codes and real stream framing rather than patched functions.

Wire formats, by path:

    POST .../v1/chat/completions   OpenAI chat completions (JSON, or SSE with "stream": true)
    GET  .../v1/models             OpenAI model list (Anthropic's when anthropic-version is sent)
    POST .../v1/messages           Anthropic Messages (JSON, or SSE events with "stream": true)
    POST .../api/chat              Ollama chat (NDJSON stream unless "stream": false)
    GET  .../api/tags              Ollama model list

Behaviour is chosen by a path prefix `/sim/<behaviours>/` in front of the protocol path, a
comma-separated list such as `/sim/delay=300,answer=urgent/v1/chat/completions`. Without the
prefix the simulator echoes. Behaviours (values are URL-decoded, so `%2C` is a literal comma):

    answer=TEXT         answer with TEXT
    echo                answer with the last user message (the default)
    delay=MS            wait before answering
    chunk_delay=MS      wait between streamed chunks
    status=CODE         answer CODE (400-599) in the provider's error shape
    retry_after=VALUE   add Retry-After: VALUE (seconds or an HTTP-date)
    context_length      the provider's own 400 for a prompt longer than the context window
    refuse              OpenAI finish_reason content_filter, Anthropic stop_reason refusal
                        (Ollama has no refusal signal: it answers with a refusal in prose)
    malformed           200 whose body is not JSON (or a stream whose events are not)
    wrong_schema        200 JSON without the fields the protocol promises
    reset               close the socket abruptly, without a response
    break_after=N       send N content chunks (or half the body), then drop the connection
    fail_first=N        the first N calls under this exact prefix answer 500
    key=VALUE           401 unless VALUE is presented where the provider expects its key; the
                        401 echoes the presented key, as OpenAI's does, so scrubbing is testable
    tokens_in=N         report N input tokens instead of counting words
    tokens_out=N        report N output tokens instead of counting words
    tag=NAME            no effect: gives a call its own counter prefix

Control endpoints: GET /_sim/calls -> {"total": N, "by_prefix": {...}, "connections": N}
counting every protocol call received, failed ones included, and the TCP connections accepted;
POST /_sim/reset zeroes the counters and fail_first.

This module does not import Django, so it can run anywhere Python does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

PROTOCOLS = ("openai", "anthropic", "ollama")
SIM_PREFIX = "/sim/"
# Characters kept as they are when a behaviour list is put in a URL: '%' so that text already
# percent-encoded by the caller is not encoded twice, ',' and '=' because they are the syntax.
_URL_SAFE = "=,%:;+-_.~!$&'()*@"
_FLAGS = {"echo", "context_length", "refuse", "malformed", "wrong_schema", "reset"}
_VALUED = {
    "answer",
    "delay",
    "chunk_delay",
    "status",
    "retry_after",
    "break_after",
    "fail_first",
    "key",
    "tokens_in",
    "tokens_out",
    "tag",
}
_REFUSAL_PROSE = "I'm sorry, but I can't help with that."
_MALFORMED_BODY = b'{"id": "sim-truncated", "choices": [{"index": 0, "message": '
_BREAK = object()  # in a stream of events: drop the connection here


class BehaviourError(ValueError):
    """The behaviour prefix is not one the simulator understands."""


@dataclass
class Behaviours:
    answer: str | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    context_length: bool = False
    refuse: bool = False
    malformed: bool = False
    wrong_schema: bool = False
    reset: bool = False
    break_after: int | None = None
    fail_first: int = 0
    key: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None


def parse_behaviours(prefix: str) -> Behaviours:
    """Read a raw (still percent-encoded) behaviour list; raise BehaviourError naming the item."""
    result = Behaviours()
    for item in prefix.split(","):
        if not item:
            continue
        name, has_value, raw = item.partition("=")
        name = unquote(name)
        value = unquote(raw)
        if name in _FLAGS:
            if has_value:
                raise BehaviourError(f"behaviour {name!r} takes no value")
            if name != "echo":
                setattr(result, name, True)
            continue
        if name not in _VALUED:
            known = ", ".join(sorted(_FLAGS | {f"{v}=..." for v in _VALUED}))
            raise BehaviourError(f"unknown behaviour {name!r} (known: {known})")
        if not has_value or value == "":
            raise BehaviourError(f"behaviour {name!r} needs a value: {name}=...")
        if name == "answer":
            result.answer = value
        elif name in {"key", "retry_after"}:
            setattr(result, name, value)
        elif name == "tag":
            pass
        elif name == "status":
            code = _whole(name, value)
            if not 400 <= code <= 599:
                raise BehaviourError(f"status={code}: only error statuses 400-599 can be simulated")
            result.status = code
        elif name in {"delay", "chunk_delay"}:
            setattr(result, f"{name}_s", _whole(name, value) / 1000)
        else:
            setattr(result, name, _whole(name, value))
    return result


def _whole(name: str, value: str) -> int:
    if not value.isdigit():
        raise BehaviourError(f"{name}={value!r} is not a whole number")
    return int(value)


def quote_behaviours(behaviours: str) -> str:
    """The behaviour list as it appears in a URL (and as the call counters key it)."""
    return quote(behaviours, safe=_URL_SAFE)


# --- the three wire formats -------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _pieces(text: str) -> list[str]:
    """Split an answer into word-sized stream chunks that join back to exactly the text."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        pieces.append(tail)
    return pieces


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Exchange:
    """One parsed protocol request, as the dialects need it."""

    body: dict[str, Any]
    model: str
    stream: bool
    last_user: str
    words_in: int
    include_usage: bool = False


class Dialect:
    """How one provider shapes requests, answers, streams and errors."""

    name = ""
    stream_type = "text/event-stream"

    def presented_key(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def parse(self, body: dict[str, Any], headers: Any) -> Exchange | str:
        """The exchange, or the provider's own message for an invalid request."""
        raise NotImplementedError

    def error(self, status: int, message: str, kind: str = "") -> dict[str, Any]:
        raise NotImplementedError

    def auth_error(self, presented: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def status_error(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    def context_error(self, words_in: int) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, ex: Exchange, text: str, tokens: tuple[int, int], refused: bool) -> dict[str, Any]:
        raise NotImplementedError

    def wrong_schema(self, ex: Exchange, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def events(
        self, ex: Exchange, tokens: tuple[int, int], refused: bool, wrong: bool
    ) -> tuple[list[bytes], Callable[[str], bytes], list[bytes]]:
        """Stream framing: the events before the content, one event per content piece, and
        the events after it."""
        raise NotImplementedError

    def malformed_event(self) -> bytes:
        return b"data: {not json\n\n"

    def models(self, headers: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _messages(self, body: dict[str, Any], roles: set[str]) -> list[dict[str, Any]] | str:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return "messages: a list of messages is required"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in roles:
                return f"messages.{i}.role: must be one of {', '.join(sorted(roles))}"
            if not isinstance(message.get("content"), (str, list, type(None))):
                return f"messages.{i}.content: must be a string or a list of content parts"
        return messages

    @staticmethod
    def _last_user(messages: list[dict[str, Any]]) -> str:
        for message in reversed(messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @staticmethod
    def _words(*texts: str) -> int:
        return sum(len(text.split()) for text in texts)


class OpenAIDialect(Dialect):
    name = "openai"

    def parse(self, body: dict[str, Any], headers: Any) -> Exchange | str:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = self._messages(body, {"system", "developer", "user", "assistant", "tool"})
        if isinstance(messages, str):
            return messages
        if not messages:
            return "[] is too short - 'messages'"
        options = body.get("stream_options")
        return Exchange(
            body=body,
            model=body["model"],
            stream=body.get("stream") is True,
            last_user=self._last_user(messages),
            words_in=self._words(*(_text_of(m.get("content")) for m in messages)),
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )

    def error(self, status: int, message: str, kind: str = "") -> dict[str, Any]:
        kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def auth_error(self, presented: str | None) -> dict[str, Any]:
        if presented is None:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        else:
            message = f"Incorrect API key provided: {presented}. You can find your API key at https://platform.openai.com/account/api-keys."
        payload = self.error(401, message)
        payload["error"]["code"] = "invalid_api_key"
        return payload

    def status_error(self, status: int) -> dict[str, Any]:
        if status == 401:
            return self.auth_error(None)
        if status == 429:
            payload = self.error(status, "Rate limit reached for requests. Please try again later.", "requests")
            payload["error"]["code"] = "rate_limit_exceeded"
            return payload
        messages = {
            400: "Invalid request: the simulator was asked to reject it.",
            403: "You are not allowed to sample from this model.",
            404: "The model does not exist or you do not have access to it.",
            500: "The server had an error while processing your request. Sorry about that!",
            502: "Bad gateway.",
            503: "The engine is currently overloaded, please try again later.",
        }
        return self.error(status, messages.get(status, f"Simulated HTTP {status}."))

    def context_error(self, words_in: int) -> dict[str, Any]:
        payload = self.error(
            400,
            f"This model's maximum context length is 8192 tokens. However, your messages resulted in "
            f"{max(words_in, 8193)} tokens. Please reduce the length of the messages.",
        )
        payload["error"].update(param="messages", code="context_length_exceeded")
        return payload

    def _base(self, ex: Exchange, obj: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-sim{uuid.uuid4().hex[:20]}", "object": obj, "created": int(time.time()), "model": ex.model}

    @staticmethod
    def _usage(tokens: tuple[int, int]) -> dict[str, int]:
        return {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)}

    def answer(self, ex: Exchange, text: str, tokens: tuple[int, int], refused: bool) -> dict[str, Any]:
        message = {"role": "assistant", "content": None if refused else text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter" if refused else "stop"}
        return {**self._base(ex, "chat.completion"), "choices": [choice], "usage": self._usage(tokens), "system_fingerprint": None}

    def wrong_schema(self, ex: Exchange, text: str) -> dict[str, Any]:
        return {**self._base(ex, "chat.completion"), "output": text}

    def events(
        self, ex: Exchange, tokens: tuple[int, int], refused: bool, wrong: bool
    ) -> tuple[list[bytes], Callable[[str], bytes], list[bytes]]:
        base = self._base(ex, "chat.completion.chunk")
        extra = {"usage": None} if ex.include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        if wrong:
            return [], lambda piece: b"data: " + json.dumps({**base, "text": piece}).encode() + b"\n\n", [b"data: [DONE]\n\n"]
        after = [chunk({}, "content_filter" if refused else "stop")]
        if ex.include_usage:
            after.append(b"data: " + json.dumps({**base, "choices": [], "usage": self._usage(tokens)}).encode() + b"\n\n")
        after.append(b"data: [DONE]\n\n")
        return [chunk({"role": "assistant", "content": ""}, None)], lambda piece: chunk({"content": piece}, None), after

    def models(self, headers: Any) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "sim-model", "object": "model", "created": 0, "owned_by": "provider-simulator"}]}


class AnthropicDialect(Dialect):
    name = "anthropic"

    def presented_key(self, headers: Any) -> str | None:
        return headers.get("x-api-key")

    def parse(self, body: dict[str, Any], headers: Any) -> Exchange | str:
        if not headers.get("anthropic-version"):
            return "anthropic-version: header is required"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: Field required"
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return "max_tokens: Field required (a positive integer)"
        messages = self._messages(body, {"user", "assistant"})
        if isinstance(messages, str):
            return messages
        if not messages:
            return "messages: at least one message is required"
        system = body.get("system", "")
        if not isinstance(system, (str, list)):
            return "system: Input should be a valid string or a list of text blocks"
        return Exchange(
            body=body,
            model=body["model"],
            stream=body.get("stream") is True,
            last_user=self._last_user(messages),
            words_in=self._words(_text_of(system), *(_text_of(m.get("content")) for m in messages)),
        )

    _KINDS = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def error(self, status: int, message: str, kind: str = "") -> dict[str, Any]:
        kind = kind or self._KINDS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def auth_error(self, presented: str | None) -> dict[str, Any]:
        if presented is None:
            return self.error(401, "x-api-key header is required")
        return self.error(401, f"invalid x-api-key: {presented}")

    def status_error(self, status: int) -> dict[str, Any]:
        if status == 401:
            return self.auth_error(None)
        messages = {
            400: "Invalid request: the simulator was asked to reject it.",
            429: "Number of request tokens has exceeded your per-minute rate limit.",
            500: "Internal server error",
            529: "Overloaded",
        }
        return self.error(status, messages.get(status, f"Simulated HTTP {status}."))

    def context_error(self, words_in: int) -> dict[str, Any]:
        return self.error(400, f"prompt is too long: {max(words_in, 200001)} tokens > 200000 maximum")

    def answer(self, ex: Exchange, text: str, tokens: tuple[int, int], refused: bool) -> dict[str, Any]:
        return {
            "id": f"msg_sim{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": ex.model,
            "content": [] if refused else [{"type": "text", "text": text}],
            "stop_reason": "refusal" if refused else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        }

    def wrong_schema(self, ex: Exchange, text: str) -> dict[str, Any]:
        return {"id": f"msg_sim{uuid.uuid4().hex[:20]}", "type": "message", "model": ex.model, "completion": text}

    @staticmethod
    def _event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

    def events(
        self, ex: Exchange, tokens: tuple[int, int], refused: bool, wrong: bool
    ) -> tuple[list[bytes], Callable[[str], bytes], list[bytes]]:
        start = self.answer(ex, "", (tokens[0], 1), False)
        start.update(content=[], stop_reason=None)
        before = [self._event("message_start", {"type": "message_start", "message": start})]
        if not refused:
            block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            before += [self._event("content_block_start", block), self._event("ping", {"type": "ping"})]

        def delta(piece: str) -> bytes:
            if wrong:
                return self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "text": piece})
            return self._event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            )

        after = [] if refused else [self._event("content_block_stop", {"type": "content_block_stop", "index": 0})]
        after += [
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "refusal" if refused else "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": tokens[1]},
                },
            ),
            self._event("message_stop", {"type": "message_stop"}),
        ]
        return before, delta, after

    def malformed_event(self) -> bytes:
        return b"event: content_block_delta\ndata: {not json\n\n"

    def models(self, headers: Any) -> dict[str, Any]:
        model = {"type": "model", "id": "sim-model", "display_name": "Simulated model", "created_at": "2025-01-01T00:00:00Z"}
        return {"data": [model], "has_more": False, "first_id": "sim-model", "last_id": "sim-model"}


class OllamaDialect(Dialect):
    name = "ollama"
    stream_type = "application/x-ndjson"

    def parse(self, body: dict[str, Any], headers: Any) -> Exchange | str:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model is required"
        messages = self._messages(body, {"system", "user", "assistant", "tool"})
        if isinstance(messages, str):
            return messages
        return Exchange(
            body=body,
            model=body["model"],
            # Ollama streams unless told otherwise.
            stream=body.get("stream", True) is not False,
            last_user=self._last_user(messages),
            words_in=self._words(*(_text_of(m.get("content")) for m in messages)),
        )

    def error(self, status: int, message: str, kind: str = "") -> dict[str, Any]:
        return {"error": message}

    def auth_error(self, presented: str | None) -> dict[str, Any]:
        if presented is None:
            return self.error(401, "unauthorized: a bearer token is required")
        return self.error(401, f"unauthorized: invalid bearer token {presented}")

    def status_error(self, status: int) -> dict[str, Any]:
        if status == 401:
            return self.auth_error(None)
        messages = {
            400: "invalid request: the simulator was asked to reject it",
            404: "model not found, try pulling it first",
            429: "server busy, please try again. maximum pending requests exceeded",
            500: "llama runner process has terminated: exit status 2",
            503: "server overloaded, please try again later",
        }
        return self.error(status, messages.get(status, f"simulated HTTP {status}"))

    def context_error(self, words_in: int) -> dict[str, Any]:
        return self.error(400, f"the input length ({max(words_in, 8193)} tokens) exceeds the context length (8192 tokens)")

    def _base(self, ex: Exchange) -> dict[str, Any]:
        return {"model": ex.model, "created_at": _now_iso()}

    def _final(self, ex: Exchange, text: str, tokens: tuple[int, int]) -> dict[str, Any]:
        return {
            **self._base(ex),
            "message": {"role": "assistant", "content": text},
            "done_reason": "stop",
            "done": True,
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": tokens[0],
            "prompt_eval_duration": 200_000,
            "eval_count": tokens[1],
            "eval_duration": 700_000,
        }

    def answer(self, ex: Exchange, text: str, tokens: tuple[int, int], refused: bool) -> dict[str, Any]:
        return self._final(ex, text, tokens)

    def wrong_schema(self, ex: Exchange, text: str) -> dict[str, Any]:
        # The shape of Ollama's /api/generate, a classic mix-up.
        return {**self._base(ex), "response": text, "done": True}

    def events(
        self, ex: Exchange, tokens: tuple[int, int], refused: bool, wrong: bool
    ) -> tuple[list[bytes], Callable[[str], bytes], list[bytes]]:
        def line(piece: str) -> bytes:
            if wrong:
                return json.dumps({**self._base(ex), "response": piece, "done": False}).encode() + b"\n"
            payload = {**self._base(ex), "message": {"role": "assistant", "content": piece}, "done": False}
            return json.dumps(payload).encode() + b"\n"

        final = {**self._base(ex), "done": True} if wrong else self._final(ex, "", tokens)
        return [], line, [json.dumps(final).encode() + b"\n"]

    def malformed_event(self) -> bytes:
        return b"{not json\n"

    def models(self, headers: Any) -> dict[str, Any]:
        return {"models": [{"name": "sim-model", "model": "sim-model", "modified_at": "2025-01-01T00:00:00Z", "size": 0}]}


DIALECTS: dict[str, Dialect] = {d.name: d for d in (OpenAIDialect(), AnthropicDialect(), OllamaDialect())}

# (method, path after the behaviour prefix) -> (dialect, kind of endpoint)
ENDPOINTS: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/v1/chat/completions"): ("openai", "chat"),
    ("GET", "/v1/models"): ("openai", "models"),
    ("POST", "/v1/messages"): ("anthropic", "chat"),
    ("POST", "/api/chat"): ("ollama", "chat"),
    ("GET", "/api/tags"): ("ollama", "models"),
}


# --- the server -------------------------------------------------------------------------------


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_prefix: dict[str, int] = {}
        self.chat_calls: dict[str, int] = {}
        # TCP connections accepted: lets a test see that a pooled client kept its connection.
        self.connections = 0

    def count(self, prefix: str) -> None:
        with self.lock:
            self.by_prefix[prefix] = self.by_prefix.get(prefix, 0) + 1

    def connected(self) -> None:
        with self.lock:
            self.connections += 1

    def still_failing(self, prefix: str, first: int) -> bool:
        with self.lock:
            n = self.chat_calls[prefix] = self.chat_calls.get(prefix, 0) + 1
        return n <= first

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"total": sum(self.by_prefix.values()), "by_prefix": dict(self.by_prefix), "connections": self.connections}

    def reset(self) -> None:
        with self.lock:
            self.by_prefix.clear()
            self.chat_calls.clear()
            self.connections = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The suite makes dozens of concurrent calls; the default backlog of 5 would drop SYNs.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], log: Callable[[str], None] | None) -> None:
        super().__init__(address, _Handler)
        self.counters = _Counters()
        self.stopping = threading.Event()
        self.log = log
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self.counters.connected()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_open_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections, so stop() is prompt."""
        with self._open_lock:
            connections = list(self._open)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, closed pool) is part of the game, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "provider-simulator/1"
    sys_version = ""
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this; clients' pools expire theirs sooner.
    timeout = 120
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            # A key= behaviour carries a key in the path; it stays out of the log.
            self.server.log(re.sub(r"key=[^,/]*", "key=***", format % args))

    # --- plumbing ---

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _drop(self, *, abortive: bool) -> None:
        """Close without finishing the response. Abortive sends a TCP reset at once; otherwise
        a FIN, so data already sent still reaches the client before the connection ends."""
        self.close_connection = True
        sock = self.connection
        try:
            if abortive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # close() would wait for rfile/wfile to let go of the socket; the reset must go now.
                os.close(sock.detach())
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.server.stopping.wait(seconds)

    def _stream(self, content_type: str, events: Iterator[bytes | object], chunk_delay_s: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            if event is _BREAK:
                self._drop(abortive=False)
                return
            assert isinstance(event, bytes)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self._wait(chunk_delay_s)
        self.wfile.write(b"0\r\n\r\n")

    # --- routing of a request ---

    def _dispatch(self, method: str) -> None:
        body = self._read_body()  # always, so a kept-alive connection stays in step
        path = urlsplit(self.path).path
        if path.startswith("/_sim/") or path == "/_sim":
            self._control(method, path)
            return
        if path.startswith(SIM_PREFIX):
            prefix, _, rest = path[len(SIM_PREFIX) :].partition("/")
            rest = "/" + rest
        else:
            prefix, rest = "", path
        if rest != "/" and rest.endswith("/"):
            rest = rest.rstrip("/")
        self.server.counters.count(prefix)
        endpoint = ENDPOINTS.get((method, rest))
        if endpoint is None:
            self._unknown_endpoint(method, rest)
            return
        dialect_name, kind = endpoint
        if kind == "models" and dialect_name == "openai" and self.headers.get("anthropic-version"):
            dialect_name = "anthropic"
        dialect = DIALECTS[dialect_name]
        try:
            behaviours = parse_behaviours(prefix)
        except BehaviourError as exc:
            self._send_json(400, dialect.error(400, f"provider simulator: {exc}"))
            return
        self._protocol_call(dialect, kind, prefix, behaviours, body)

    def _unknown_endpoint(self, method: str, path: str) -> None:
        allowed = sorted({m for (m, p) in ENDPOINTS if p == path})
        if allowed:
            message = f"provider simulator: {method} is not allowed on {path} (use {', '.join(allowed)})"
            self._send_json(405, {"error": {"message": message, "type": "invalid_request_error"}}, {"Allow": ", ".join(allowed)})
            return
        known = ", ".join(f"{m} {p}" for m, p in ENDPOINTS)
        message = f"provider simulator: no endpoint {method} {path} (known: {known}, under an optional /sim/<behaviours>/ prefix)"
        self._send_json(404, {"error": {"message": message, "type": "invalid_request_error"}})

    def _control(self, method: str, path: str) -> None:
        counters = self.server.counters
        if path == "/_sim/calls" and method == "GET":
            self._send_json(200, counters.snapshot())
        elif path == "/_sim/reset" and method == "POST":
            counters.reset()
            self._send_json(200, counters.snapshot())
        elif path in {"/_sim/calls", "/_sim/reset"}:
            self._send_json(405, {"error": {"message": f"provider simulator: {method} is not allowed on {path}"}})
        else:
            self._send_json(404, {"error": {"message": f"provider simulator: no control endpoint {path} (GET /_sim/calls, POST /_sim/reset)"}})

    def _protocol_call(self, dialect: Dialect, kind: str, prefix: str, b: Behaviours, raw: bytes) -> None:
        self._wait(b.delay_s)
        if b.reset:
            self._drop(abortive=True)
            return
        extra = {"Retry-After": b.retry_after} if b.retry_after else {}
        request_id = "x-request-id" if dialect.name == "openai" else "request-id"
        extra[request_id] = f"req_sim{uuid.uuid4().hex[:16]}"
        if b.key is not None:
            presented = dialect.presented_key(self.headers)
            if presented != b.key:
                self._send_json(401, dialect.auth_error(presented), extra)
                return
        if kind == "models":
            self._send_json(200, dialect.models(self.headers), extra)
            return
        if b.fail_first and self.server.counters.still_failing(prefix, b.fail_first):
            self._send_json(500, dialect.status_error(500), extra)
            return
        if b.status is not None:
            self._send_json(b.status, dialect.status_error(b.status), extra)
            return
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send_json(400, dialect.error(400, f"provider simulator: the request body is not valid JSON ({exc})"), extra)
            return
        if not isinstance(body, dict):
            self._send_json(400, dialect.error(400, "provider simulator: the request body must be a JSON object"), extra)
            return
        ex = dialect.parse(body, self.headers)
        if isinstance(ex, str):
            self._send_json(400, dialect.error(400, ex), extra)
            return
        if b.context_length:
            self._send_json(400, dialect.context_error(ex.words_in), extra)
            return
        refused = b.refuse and dialect.name != "ollama"
        text = _REFUSAL_PROSE if b.refuse and not refused else (b.answer if b.answer is not None else ex.last_user)
        if refused:
            text = ""
        tokens = (
            b.tokens_in if b.tokens_in is not None else ex.words_in,
            b.tokens_out if b.tokens_out is not None else len(text.split()),
        )
        if ex.stream:
            self._stream(dialect.stream_type, self._events(dialect, ex, text, tokens, refused, b), b.chunk_delay_s)
            return
        if b.malformed:
            self._send(200, _MALFORMED_BODY, "application/json", extra)
            return
        payload = dialect.wrong_schema(ex, text) if b.wrong_schema else dialect.answer(ex, text, tokens, refused)
        if b.break_after is not None:
            encoded = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded[: len(encoded) // 2])
            self._drop(abortive=False)
            return
        self._send_json(200, payload, extra)

    def _events(
        self, dialect: Dialect, ex: Exchange, text: str, tokens: tuple[int, int], refused: bool, b: Behaviours
    ) -> Iterator[bytes | object]:
        if b.malformed:
            yield dialect.malformed_event()
            return
        pieces = [] if refused else _pieces(text)
        before, each, after = dialect.events(ex, tokens, refused, b.wrong_schema)
        yield from before
        for i, piece in enumerate(pieces):
            if b.break_after is not None and i >= b.break_after:
                yield _BREAK
                return
            yield each(piece)
        if b.break_after is not None:
            yield _BREAK
            return
        yield from after


class ProviderSimulator:
    """The simulator as a Python object: start() serves in a daemon thread, stop() ends it.

        sim = ProviderSimulator().start()
        sim.base_url("openai", "answer=urgent")   # http://127.0.0.1:PORT/sim/answer=urgent/v1
        sim.calls("answer=urgent")                 # calls received under that prefix
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.port = port
        self._log = log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> ProviderSimulator:
        if self._server is None:
            self._server = _Server((self.host, self.port), self._log)
            self.port = self._server.server_address[1]
        return self

    def start(self) -> ProviderSimulator:
        self.bind()
        assert self._server is not None
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="provider-simulator", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the management command), until KeyboardInterrupt."""
        self.bind()
        assert self._server is not None
        self._server.serve_forever()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        if self._thread is not None:
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.drop_open_connections()
        server.server_close()

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, protocol: str, behaviours: str = "") -> str:
        """The base_url a backend of this protocol needs to reach these behaviours."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        root = f"{self.url}{SIM_PREFIX}{quote_behaviours(behaviours)}" if behaviours else self.url
        # The openai adapter appends /chat/completions to a base_url ending in /v1, as OpenAI's
        # SDK does; the others append their full path.
        return f"{root}/v1" if protocol == "openai" else root

    def calls(self, prefix: str | None = None) -> int:
        """Protocol calls received in all (prefix None) or under one behaviour prefix."""
        snapshot = self._require().counters.snapshot()
        if prefix is None:
            return snapshot["total"]
        return snapshot["by_prefix"].get(quote_behaviours(prefix), 0)

    def calls_by_prefix(self) -> dict[str, int]:
        return self._require().counters.snapshot()["by_prefix"]

    def connections(self) -> int:
        """TCP connections accepted since the last reset."""
        return self._require().counters.snapshot()["connections"]

    def reset(self) -> None:
        self._require().counters.reset()

    def _require(self) -> _Server:
        if self._server is None:
            raise RuntimeError("the provider simulator is not running: call start() first")
        return self._server

