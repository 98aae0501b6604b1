"""OpenAI chat completions, as spoken by OpenAI and the servers that copy it (vLLM, llama.cpp,
LM Studio, OpenRouter, Ollama's /v1). The backend's base_url ends in /v1, as OpenAI's SDK expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from routing.adapters.base import AdapterError, Completion
from routing.adapters.http import HTTPAdapter, bad, error_fields, parse_json, sse_events, token_count, with_instructions

# OpenAI and vLLM say "maximum context length", llama.cpp "exceeds the available context size".
CONTEXT_MESSAGE = re.compile(r"maximum context length|context (length|size|window)", re.IGNORECASE)
CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error"}
REFUSAL_CODES = {"content_policy_violation", "content_filter"}


class OpenAIAdapter(HTTPAdapter):
    protocol = "openai"
    path = "/chat/completions"

    def payload(self, messages: list[dict[str, str]], instructions: str, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": with_instructions(messages, instructions),
        }
        if stream:
            body["stream"] = True
            # Without it the stream carries no token counts, and cost could not be computed.
            body["stream_options"] = {"include_usage": True}
        return body

    def is_context_error(self, status: int, data: Any, message: str) -> bool:
        code, kind = error_fields(data)
        return status < 500 and (code in CONTEXT_CODES or kind in CONTEXT_CODES or bool(CONTEXT_MESSAGE.search(message)))

    def is_refusal_error(self, status: int, data: Any, message: str) -> bool:
        code, kind = error_fields(data)
        return status < 500 and (code in REFUSAL_CODES or kind in REFUSAL_CODES)

    def read_completion(self, data: Any) -> Completion:
        if not isinstance(data, dict):
            raise bad("HTTP 200 whose JSON is not an object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("HTTP 200 without choices[0]")
        choice = choices[0]
        if choice.get("finish_reason") == "content_filter":
            raise AdapterError("content_refused", "the provider withheld the answer (finish_reason content_filter)")
        message = choice.get("message")
        if not isinstance(message, dict):
            raise bad("HTTP 200 without choices[0].message")
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise AdapterError("content_refused", f"the model refused: {refusal}")
        content = message.get("content")
        if not isinstance(content, str):
            raise bad("HTTP 200 whose choices[0].message.content is not text")
        usage = data.get("usage")
        if usage is None:
            usage = {}
        if not isinstance(usage, dict):
            raise bad("HTTP 200 whose usage is not an object")
        return Completion(
            text=content,
            tokens_in=token_count(usage.get("prompt_tokens"), "usage.prompt_tokens"),
            tokens_out=token_count(usage.get("completion_tokens"), "usage.completion_tokens"),
        )

    def read_stream(self, response: httpx.Response) -> Iterator[str | Completion]:
        parts: list[str] = []
        tokens_in = tokens_out = 0
        finished = done = False
        refusal = ""
        for _, data in sse_events(response.iter_lines()):
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = parse_json(data, "a stream chunk")
            if not isinstance(chunk, dict):
                raise bad("a stream chunk is not an object")
            if "error" in chunk:
                raise self._stream_error(chunk)
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                tokens_in = token_count(usage.get("prompt_tokens"), "usage.prompt_tokens")
                tokens_out = token_count(usage.get("completion_tokens"), "usage.completion_tokens")
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                raise bad("a stream chunk without choices")
            if not choices:  # the usage chunk
                continue
            choice = choices[0]
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if delta is None and isinstance(choice, dict) and choice.get("finish_reason"):
                delta = {}
            if not isinstance(delta, dict):
                raise bad("a stream chunk without choices[0].delta")
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise bad("a stream chunk whose delta.content is not text")
            if isinstance(delta.get("refusal"), str):
                refusal += delta["refusal"]
            if content:
                parts.append(content)
                yield content
            reason = choice.get("finish_reason")
            if reason == "content_filter":
                raise AdapterError("content_refused", "the provider withheld the answer (finish_reason content_filter)")
            if reason:
                finished = True
        if refusal:
            raise AdapterError("content_refused", f"the model refused: {refusal}")
        if not (done or finished):
            raise bad("the stream ended before the provider said it was finished")
        yield Completion(text="".join(parts), tokens_in=tokens_in, tokens_out=tokens_out)

    def _stream_error(self, chunk: dict[str, Any]) -> AdapterError:
        error = chunk["error"]
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        code, kind = error_fields(chunk)
        if "rate_limit" in code or "rate_limit" in kind:
            return AdapterError("rate_limited", f"error in the stream: {message}")
        if code in CONTEXT_CODES or CONTEXT_MESSAGE.search(str(message)):
            return AdapterError("context_length", f"error in the stream: {message}")
        return AdapterError("server_error", f"error in the stream: {message}")
