"""The JSON service API (DESIGN.md, "Service API"): route a call, read a route log, health.

Every answer on these paths is JSON, errors included: {"error": {"type", "message"}} with the
right status, whatever arrives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from routing import executor, idempotency
from routing.callers import authenticate, bearer_token, check_rate_limit
from routing.models import Caller, RouteLog
from routing.planner import UnknownCapability

View = Callable[..., HttpResponse]


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, error_type: str, message: str, *, route_id: int | None = None, headers: dict[str, str] | None = None
) -> JsonResponse:
    body: dict[str, Any] = {"error": {"type": error_type, "message": message}}
    if route_id is not None:
        body["route_id"] = route_id
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def json_api(*methods: str) -> Callable[[View], View]:
    """Allow only `methods`, exempt from CSRF (callers use bearer tokens), and turn ApiError
    into its JSON answer."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error_response(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.error_type, exc.message, headers=exc.headers)

        return wrapper

    return decorate


def require_caller(request: HttpRequest) -> Caller:
    token = bearer_token(request.headers.get("Authorization", ""))
    if not token:
        raise ApiError(401, "unauthorized", "send a caller token as Authorization: Bearer <token>")
    caller = authenticate(token)
    if caller is None:
        raise ApiError(401, "unauthorized", "the caller token is unknown or revoked")
    return caller


def read_json_object(request: HttpRequest) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object, refusing a body above the size limit before reading it."""
    limit = settings.FOS_MAX_REQUEST_BYTES
    too_large = ApiError(413, "payload_too_large", f"the body is larger than the limit of {limit} bytes")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError(400, "invalid_request", "Content-Length is not a number") from None
    if declared > limit:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_request", f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", f"the body must be a JSON object, not {type(data).__name__}")
    return data, body


def parse_route_body(data: dict[str, Any]) -> tuple[str | list[dict[str, str]], dict[str, Any]]:
    unknown = sorted(set(data) - {"input", "messages", "metadata"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}: send input or messages, and metadata")
    if ("input" in data) == ("messages" in data):
        raise ApiError(400, "invalid_request", "send exactly one of input (a string) or messages (a list)")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ApiError(400, "invalid_request", "metadata must be an object")
    if "input" in data:
        value = data["input"]
        if not isinstance(value, str):
            raise ApiError(400, "invalid_request", "input must be a string")
        if not value.strip():
            raise ApiError(400, "invalid_request", "input must not be empty")
        return value, metadata
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "invalid_request", "messages must be a non-empty list")
    try:
        executor.normalize_input(messages)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    return messages, metadata


def admit(request: HttpRequest, *, caller: Caller, capability: str, value: Any) -> None:
    """Refuse a call the caller may not make now: unknown capability, not allowed, rate limited.
    A rate-limited call still leaves a route log, marked rejected."""
    try:
        executor.capability_spec(capability)
    except UnknownCapability:
        raise ApiError(404, "not_found", f"unknown capability {capability!r}") from None
    if not caller.may_use(capability):
        raise ApiError(403, "forbidden", f"caller {caller.name} may not use {capability}")
    retry_after = check_rate_limit(caller)
    if retry_after is not None:
        entry = executor.record_rejection(
            capability, value, caller=caller, reason=f"rate limit of {caller.rate_limit_per_minute or settings.FOS_DEFAULT_RATE_LIMIT_PER_MINUTE} requests per minute reached"
        )
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit reached; retry after {retry_after:.0f} s (route {entry.pk})",
            headers={"Retry-After": f"{retry_after:.0f}", "X-Route-Id": str(entry.pk)},
        )


def keyed(
    request: HttpRequest, *, caller: Caller, body: bytes, produce: Callable[[], tuple[int, dict[str, Any], dict[str, str]]]
) -> HttpResponse:
    """Run `produce` once per Idempotency-Key; replay its answer for the same key and body."""
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        status, payload, headers = produce()
        return _json(status, payload, headers)
    if len(key) > 200:
        raise ApiError(400, "invalid_request", "Idempotency-Key is longer than 200 characters")
    claim = idempotency.claim(
        caller=caller, key=key, request_sha256=idempotency.request_hash(path=request.path, body=body)
    )
    if claim.conflict == "mismatch":
        raise ApiError(422, "idempotency_mismatch", "this Idempotency-Key was used with a different request")
    if claim.conflict == "running":
        raise ApiError(409, "idempotency_in_progress", "a request with this Idempotency-Key is still running")
    if claim.replay is not None:
        response = _json(claim.replay.response_status or 200, claim.replay.response_body or {}, {})
        response["Idempotent-Replayed"] = "true"
        route_id = (claim.replay.response_body or {}).get("route_id")
        if route_id is not None:
            response["X-Route-Id"] = str(route_id)
        return response
    assert claim.record is not None
    try:
        status, payload, headers = produce()
    except BaseException:
        idempotency.abandon(claim.record)
        raise
    if status >= 500 and "route_id" not in payload:
        idempotency.abandon(claim.record)
    else:
        idempotency.finish(claim.record, status=status, body=payload)
    return _json(status, payload, headers)


def _json(status: int, payload: dict[str, Any], headers: dict[str, str]) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def answer_headers(result: executor.RouteResult, *, started: float) -> dict[str, str]:
    """X-Route-Id, and X-Route-Overhead-Ms: this request's time outside its provider attempts
    (reading and checking the request, planning, the durable route-log write), in ms."""
    overhead_ms = (time.perf_counter() - started) * 1000 - result.provider_ms
    return {"X-Route-Id": str(result.route_id), "X-Route-Overhead-Ms": f"{max(overhead_ms, 0.0):.3f}"}


@json_api("POST")
def route(request: HttpRequest, capability: str) -> HttpResponse:
    started = time.perf_counter()
    caller = require_caller(request)
    data, body = read_json_object(request)
    value, metadata = parse_route_body(data)
    admit(request, caller=caller, capability=capability, value=value)

    def produce() -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            result = executor.run(capability, value, caller=caller, metadata=metadata)
        except executor.RouteFailed as failed:
            payload = {
                "error": {"type": "route_failed", "message": f"no route succeeded ({failed.error_class or 'no eligible route'})"},
                "route_id": failed.route_id,
                "outcome": "failed",
            }
            return 503, payload, {"X-Route-Id": str(failed.route_id)}
        payload = {
            "route_id": result.route_id,
            "output": result.output,
            "outcome": result.outcome,
            "verification": result.verification,
        }
        return 200, payload, answer_headers(result, started=started)

    return keyed(request, caller=caller, body=body, produce=produce)


def route_log_json(entry: RouteLog) -> dict[str, Any]:
    return {
        "route_id": entry.pk,
        "capability": entry.capability,
        "intent": entry.intent,
        "privacy": entry.privacy,
        "policy_revision": entry.policy_revision,
        "outcome": entry.outcome,
        "backend": entry.backend or None,
        "fallback_eligible": entry.fallback_eligible,
        "fallback_used": entry.fallback_used,
        "reasons": entry.reasons,
        "attempts": [
            {
                "backend": a.backend,
                "locality": a.locality,
                "status": a.status,
                "error_class": a.error_class or None,
                "latency_ms": a.latency_ms,
                "cost_usd": float(a.cost_usd),
                "tokens_in": a.tokens_in,
                "tokens_out": a.tokens_out,
            }
            for a in entry.attempts.all()
        ],
        "verification": entry.verification,
        "input_sha256": entry.input_sha256,
        "input_chars": entry.input_chars,
        "latency_ms": entry.latency_ms,
        "cost_usd": float(entry.cost_usd),
        "created_at": entry.created_at.isoformat(),
    }


@json_api("GET")
def route_detail(request: HttpRequest, route_id: int) -> HttpResponse:
    if request.user.is_authenticated:
        entry = RouteLog.objects.filter(pk=route_id).first()
    else:
        caller = require_caller(request)
        entry = RouteLog.objects.filter(pk=route_id, caller=caller.name).first()
    if entry is None:
        raise ApiError(404, "not_found", f"no route {route_id} for this caller")
    return JsonResponse(route_log_json(entry))


@json_api("GET", "HEAD")
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@json_api("GET", "HEAD")
def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        cache.set("readyz", 1, timeout=5)
        checks["cache"] = "ok" if cache.get("readyz") == 1 else "unavailable (read back nothing)"
    except Exception as exc:
        checks["cache"] = f"unavailable ({type(exc).__name__})"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
