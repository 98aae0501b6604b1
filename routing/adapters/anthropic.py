"""Anthropic's Messages API. The backend's base_url is the host (https://api.anthropic.com)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from routing.adapters.base import AdapterError, Completion
from routing.adapters.http import HTTPAdapter, bad, error_fields, parse_json, sse_events, token_count

API_VERSION = "2023-06-01"
# The API requires a ceiling on the answer; the capabilities this console routes answer in a
# label or a paragraph, far below it.
MAX_TOKENS = 1024
# Stream error events, by Anthropic's error type.
STREAM_ERROR_CLASSES = {
    "rate_limit_error": "rate_limited",
    "overloaded_error": "server_error",
    "api_error": "server_error",
}


class AnthropicAdapter(HTTPAdapter):
    protocol = "anthropic"
    path = "/v1/messages"

    def headers(self, secret: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "anthropic-version": API_VERSION}
        if secret:
            headers["x-api-key"] = secret
        return headers

    def payload(self, messages: list[dict[str, str]], instructions: str, *, stream: bool) -> dict[str, Any]:
        # The API has no system role in messages: any that slipped in join the instructions.
        system = [instructions] if instructions else []
        system += [m["content"] for m in messages if m.get("role") == "system"]
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": MAX_TOKENS,
            "messages": [m for m in messages if m.get("role") != "system"],
        }
        if system:
            body["system"] = "\n\n".join(system)
        if stream:
            body["stream"] = True
        return body

    def is_context_error(self, status: int, data: Any, message: str) -> bool:
        return status < 500 and "prompt is too long" in message.lower()

    def read_completion(self, data: Any) -> Completion:
        if not isinstance(data, dict):
            raise bad("HTTP 200 whose JSON is not an object")
        if data.get("stop_reason") == "refusal":
            raise AdapterError("content_refused", "the model refused (stop_reason refusal)")
        content = data.get("content")
        if not isinstance(content, list):
            raise bad("HTTP 200 without a content list")
        texts = []
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                raise bad(f"HTTP 200 whose content[{i}] is not a block")
            if block.get("type") == "text":
                if not isinstance(block.get("text"), str):
                    raise bad(f"HTTP 200 whose content[{i}].text is not text")
                texts.append(block["text"])
        usage = data.get("usage")
        if not isinstance(usage, dict):
            raise bad("HTTP 200 without usage")
        return Completion(
            text="".join(texts),
            tokens_in=token_count(usage.get("input_tokens"), "usage.input_tokens"),
            tokens_out=token_count(usage.get("output_tokens"), "usage.output_tokens"),
        )

    def read_stream(self, response: httpx.Response) -> Iterator[str | Completion]:
        parts: list[str] = []
        tokens_in = tokens_out = 0
        stopped = False
        for _, data in sse_events(response.iter_lines()):
            event = parse_json(data, "a stream event")
            if not isinstance(event, dict):
                raise bad("a stream event is not an object")
            kind = event.get("type")
            if kind == "message_start":
                message = event.get("message")
                usage = message.get("usage") if isinstance(message, dict) else None
                if not isinstance(usage, dict):
                    raise bad("message_start without message.usage")
                tokens_in = token_count(usage.get("input_tokens"), "usage.input_tokens")
                tokens_out = token_count(usage.get("output_tokens"), "usage.output_tokens")
            elif kind == "content_block_delta":
                delta = event.get("delta")
                if not isinstance(delta, dict):
                    raise bad("content_block_delta without delta")
                if delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if not isinstance(text, str):
                        raise bad("text_delta whose text is not text")
                    if text:
                        parts.append(text)
                        yield text
            elif kind == "message_delta":
                delta = event.get("delta")
                if isinstance(delta, dict) and delta.get("stop_reason") == "refusal":
                    raise AdapterError("content_refused", "the model refused (stop_reason refusal)")
                usage = event.get("usage")
                if isinstance(usage, dict) and "output_tokens" in usage:
                    tokens_out = token_count(usage.get("output_tokens"), "usage.output_tokens")
            elif kind == "message_stop":
                stopped = True
                break
            elif kind == "error":
                raise self._stream_error(event)
            # ping, content_block_start/stop, and event types added later carry no text.
        if not stopped:
            raise bad("the stream ended before message_stop")
        yield Completion(text="".join(parts), tokens_in=tokens_in, tokens_out=tokens_out)

    def _stream_error(self, event: dict[str, Any]) -> AdapterError:
        _, kind = error_fields(event)
        error = event.get("error")
        message = error.get("message", "") if isinstance(error, dict) else ""
        if "prompt is too long" in str(message).lower():
            return AdapterError("context_length", f"error in the stream: {message}")
        return AdapterError(STREAM_ERROR_CLASSES.get(kind, "bad_response"), f"error in the stream ({kind}): {message}")
