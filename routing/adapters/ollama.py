"""Ollama's native chat API. The backend's base_url is the server (http://host:11434)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from routing.adapters.base import AdapterError, Completion
from routing.adapters.http import HTTPAdapter, bad, parse_json, token_count, with_instructions

# Ollama words this differently across versions and runners ("exceeds the context length",
# "context window", "context size"); it also reports some of them as 500.
CONTEXT_MESSAGE = re.compile(r"context (length|window|size)|exceeds .*context", re.IGNORECASE)


class OllamaAdapter(HTTPAdapter):
    # Bearer only when a secret is set: Ollama wants none, a proxy in front of it may.
    protocol = "ollama"
    path = "/api/chat"

    def payload(self, messages: list[dict[str, str]], instructions: str, *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.spec.model,
            "messages": with_instructions(messages, instructions),
            # Always explicit: Ollama streams when the field is absent.
            "stream": stream,
        }

    def is_context_error(self, status: int, data: Any, message: str) -> bool:
        return bool(CONTEXT_MESSAGE.search(message))

    def read_completion(self, data: Any) -> Completion:
        if not isinstance(data, dict):
            raise bad("HTTP 200 whose JSON is not an object")
        content = self._content(data, "HTTP 200")
        return Completion(text=content, **self._usage(data))

    def read_stream(self, response: httpx.Response) -> Iterator[str | Completion]:
        parts: list[str] = []
        for line in response.iter_lines():
            if not line.strip():
                continue
            data = parse_json(line, "a stream line")
            if not isinstance(data, dict):
                raise bad("a stream line is not an object")
            if "error" in data:
                message = str(data["error"])
                error_class = "context_length" if CONTEXT_MESSAGE.search(message) else "server_error"
                raise AdapterError(error_class, f"error in the stream: {message}")
            content = self._content(data, "a stream line")
            if content:
                parts.append(content)
                yield content
            if data.get("done") is True:
                yield Completion(text="".join(parts), **self._usage(data))
                return
        raise bad("the stream ended before a line with done true")

    @staticmethod
    def _content(data: dict[str, Any], where: str) -> str:
        message = data.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise bad(f"{where} without message.content")
        return message["content"]

    @staticmethod
    def _usage(data: dict[str, Any]) -> dict[str, int]:
        # prompt_eval_count is left out when the prompt was served from Ollama's cache.
        return {
            "tokens_in": token_count(data.get("prompt_eval_count"), "prompt_eval_count"),
            "tokens_out": token_count(data.get("eval_count"), "eval_count"),
        }
