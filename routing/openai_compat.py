"""An OpenAI-compatible face on the router, so tools that speak OpenAI's API work by pointing
their base URL at FOS Console: `model` is a capability slug, `api_key` a caller token.

Supported: messages (system, user, assistant; content as a string or a list of text parts),
stream, stream_options.include_usage. Accepted and ignored, because the capability's contract
and its backends decide them: temperature, top_p, max_tokens, max_completion_tokens, stop, seed,
presence_penalty, frequency_penalty, user, metadata, store, response_format, n=1,
service_tier, reasoning_effort. Refused with a 400 naming the parameter: anything else,
including logprobs, logit_bias, tools, functions and n > 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from routing import executor
from routing.api import ApiError, admit, answer_headers, json_api, keyed, read_json_object, require_caller
from routing.models import Caller
from routing.planner import load_snapshot

IGNORED = {
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
    "frequency_penalty", "user", "metadata", "store", "response_format", "n", "service_tier", "reasoning_effort",
}
SUPPORTED = {"model", "messages", "stream", "stream_options"}


def openai_error(status: int, message: str, *, error_type: str, param: str | None = None, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(
        {"error": {"message": message, "type": error_type, "param": param, "code": error_type}}, status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _openai_errors(view: Any) -> Any:
    """OpenAI clients read error.message; ours also carry type (DESIGN.md's shape is a subset)."""

    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return openai_error(exc.status, exc.message, error_type=exc.error_type, headers=exc.headers)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def parse_chat_body(data: dict[str, Any]) -> tuple[str, list[dict[str, str]], bool, bool]:
    for key in data:
        if key not in SUPPORTED and key not in IGNORED:
            raise ApiError(400, "invalid_request", f"parameter {key!r} is not supported by this endpoint")
    if data.get("n", 1) not in (1, None):
        raise ApiError(400, "invalid_request", "parameter 'n' must be 1: one answer per call")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "invalid_request", "model must be a capability slug")
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalid_request", "messages must be a non-empty list")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise ApiError(400, "invalid_request", f"messages[{index}] must be an object")
        role = message.get("role")
        if role == "developer":
            role = "system"
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ApiError(400, "invalid_request", f"messages[{index}].content: only text parts are supported")
                texts.append(part["text"])
            content = "".join(texts)
        messages.append({"role": role, "content": content})
    try:
        executor.normalize_input(messages)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    stream = data.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, "invalid_request", "stream must be true or false")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "invalid_request", "stream_options must be an object")
    return model, messages, bool(stream), bool(options.get("include_usage"))


def _usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


@json_api("POST")
@_openai_errors
def chat_completions(request: HttpRequest) -> HttpResponse:
    started = time.perf_counter()
    caller = require_caller(request)
    data, body = read_json_object(request)
    capability, messages, stream, include_usage = parse_chat_body(data)
    admit(request, caller=caller, capability=capability, value=messages)
    if stream:
        return _stream(caller=caller, capability=capability, messages=messages, include_usage=include_usage)

    def produce() -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            result = executor.run(capability, messages, caller=caller)
        except executor.RouteFailed as failed:
            payload = {
                "error": {
                    "message": f"no route succeeded for {capability} ({failed.error_class or 'no eligible route'}); see route {failed.route_id}",
                    "type": "route_failed",
                    "param": None,
                    "code": "route_failed",
                },
                "route_id": failed.route_id,
            }
            return 503, payload, {"X-Route-Id": str(failed.route_id)}
        payload = {
            "id": f"chatcmpl-{result.route_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": capability,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": result.output}, "finish_reason": "stop", "logprobs": None}
            ],
            "usage": _usage(result.tokens_in, result.tokens_out),
            "route_id": result.route_id,
        }
        return 200, payload, answer_headers(result, started=started)

    return keyed(request, caller=caller, body=body, produce=produce)


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _stream(*, caller: Caller, capability: str, messages: list[dict[str, str]], include_usage: bool) -> HttpResponse:
    try:
        routed = executor.open_stream(capability, messages, caller=caller)
    except executor.RouteFailed as failed:
        raise ApiError(
            503,
            "route_failed",
            f"no route succeeded for {capability} ({failed.error_class or 'no eligible route'}); see route {failed.route_id}",
            headers={"X-Route-Id": str(failed.route_id)},
        ) from None
    created = int(time.time())
    base = {"id": f"chatcmpl-{routed.route_id}", "object": "chat.completion.chunk", "created": created, "model": capability}

    def events() -> Iterator[bytes]:
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for delta in routed:
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]})
        if routed.error is not None:
            error_class, message = routed.error
            yield _sse({"error": {"message": f"the answer failed: {message}; see route {routed.route_id}", "type": error_class, "param": None, "code": error_class}})
            return
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(routed.tokens_in, routed.tokens_out)})
        yield _sse("[DONE]")

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["X-Route-Id"] = str(routed.route_id)
    return response


@json_api("GET")
@_openai_errors
def models(request: HttpRequest) -> HttpResponse:
    caller = require_caller(request)
    snapshot = load_snapshot()
    data = [
        {"id": slug, "object": "model", "created": 0, "owned_by": "fos-console", "intent": spec.intent, "privacy": spec.privacy}
        for slug, spec in sorted(snapshot.capabilities.items())
        if caller.may_use(slug)
    ]
    return JsonResponse({"object": "list", "data": data})
