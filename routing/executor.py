"""The executor: tries a plan's routes in order, within the contract's latency budget, verifies
every answer, falls back only where the contract allows, and writes exactly one route log.

This is the only retry loop in the system: adapters never retry on their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from routing import breaker, planner
from routing.adapters import get_adapter
from routing.adapters.base import AdapterError, Completion
from routing.models import Attempt, RouteLog
from routing.redaction import preview, redact
from routing.verification import verify

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")


@dataclass(frozen=True)
class RouteResult:
    output: str
    route_id: int
    outcome: str  # primary | fallback
    verification: dict[str, Any]
    backend: str = ""
    latency_ms: float = 0.0
    cost_usd: Decimal = Decimal("0")
    tokens_in: int = 0
    tokens_out: int = 0


class RouteFailed(Exception):
    """No route produced a verified answer. The route log `route_id` says why, in `reasons`."""

    def __init__(self, *, capability: str, route_id: int, reasons: list[str], error_class: str) -> None:
        super().__init__(f"no route succeeded for {capability} (route {route_id}): {error_class or 'no route'}")
        self.capability = capability
        self.route_id = route_id
        self.reasons = reasons
        self.error_class = error_class


@dataclass
class _Call:
    """What one routed call accumulates on its way to the route log."""

    started: float
    reasons: list[str]
    attempts: list[Attempt] = field(default_factory=list)
    output: str = ""
    backend: str = ""
    verification: dict[str, Any] | None = None
    error_class: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")


def normalize_input(value: str | list[dict[str, str]]) -> list[dict[str, str]]:
    """A text becomes one user message; messages are checked, so adapters get a clean list."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError("input must be a text or a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{index}].role must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}].content must be a string")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("messages must include at least one user message")
    return messages


def input_fingerprint(value: str | list[dict[str, str]], messages: list[dict[str, str]]) -> tuple[str, int]:
    if isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        raw = json.dumps(messages, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return hashlib.sha256(raw).hexdigest(), sum(len(m["content"]) for m in messages)


def caller_name(caller: Any) -> str:
    if caller is None:
        return ""
    return str(getattr(caller, "name", caller))[:150]


def run(
    capability: str,
    input_or_messages: str | list[dict[str, str]],
    *,
    caller: Any = None,
    metadata: dict[str, Any] | None = None,
) -> RouteResult:
    """Route one call. Raises UnknownCapability (a LookupError) before anything is logged, and
    RouteFailed, after logging, when no route produced a verified answer."""
    started = time.perf_counter()
    messages = normalize_input(input_or_messages)
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    sha, chars = input_fingerprint(input_or_messages, messages)
    plan = planner.plan(capability, input_chars=chars)
    call = _Call(started=started, reasons=list(plan.reasons))
    _attempt_all(plan=plan, messages=messages, call=call)
    route_log = _write_log(
        plan=plan, call=call, caller=caller, metadata=metadata or {}, sha=sha, chars=chars, messages=messages
    )
    if call.verification is None or not call.verification["passed"] or not call.backend:
        raise RouteFailed(
            capability=capability, route_id=route_log.pk, reasons=route_log.reasons, error_class=call.error_class
        )
    return RouteResult(
        output=call.output,
        route_id=route_log.pk,
        outcome=route_log.outcome,
        verification=call.verification,
        backend=call.backend,
        latency_ms=route_log.latency_ms,
        cost_usd=call.cost,
        tokens_in=call.tokens_in,
        tokens_out=call.tokens_out,
    )


def _attempt_all(*, plan: planner.Plan, messages: list[dict[str, str]], call: _Call) -> None:
    spec = plan.capability
    deadline = call.started + spec.latency_budget_ms / 1000
    for candidate in plan.candidates:
        backend = candidate.backend
        if call.attempts:
            previous = call.error_class
            if spec.fallback != "next_route":
                call.reasons.append(f"not falling back: the contract says fail_closed ({previous} on the last route)")
                return
            if previous not in spec.fallback_on:
                call.reasons.append(f"not falling back: {previous} is not in fallback_on")
                return
        if spec.local_only and backend.locality != "local":
            # The planner already excludes these; this guard makes the boundary hold whatever plan arrives.
            call.reasons.append(f"{backend.slug}: not tried: hosted backend under privacy=local_only")
            continue
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            call.reasons.append(f"{backend.slug}: not tried: latency budget of {spec.latency_budget_ms} ms spent")
            call.error_class = "budget"
            return
        if candidate.breaker.state == "half_open" and not breaker.claim_trial(backend.slug):
            call.reasons.append(f"{backend.slug}: not tried: circuit half-open and another trial call is running")
            continue
        clipped = remaining < backend.timeout_s
        _attempt(
            candidate=candidate,
            messages=messages,
            instructions=spec.instructions,
            verify_rule=spec.verify,
            timeout=min(backend.timeout_s, remaining),
            clipped=clipped,
            call=call,
        )
        if call.verification is not None and call.verification["passed"] and call.backend:
            return


def _attempt(
    *,
    candidate: planner.Candidate,
    messages: list[dict[str, str]],
    instructions: str,
    verify_rule: dict[str, Any],
    timeout: float,
    clipped: bool,
    call: _Call,
) -> None:
    backend = candidate.backend
    index = len(call.attempts)
    started = time.perf_counter()
    completion: Completion | None = None
    error_class, detail = "", ""
    try:
        completion = get_adapter(backend).complete(messages=messages, instructions=instructions, timeout=timeout)
    except AdapterError as exc:
        error_class, detail = exc.error_class, exc.detail
        if error_class == "timeout" and clipped:
            error_class, detail = "budget", f"stopped when the latency budget ran out ({timeout * 1000:.0f} ms left)"
    except Exception as exc:  # a bug in an adapter must still leave a route log
        log.exception("adapter %s raised unexpectedly", backend.adapter)
        error_class, detail = "bad_response", f"adapter error ({type(exc).__name__})"
    latency_ms = (time.perf_counter() - started) * 1000
    verification = None
    tokens_in = tokens_out = 0
    cost = Decimal("0")
    if completion is not None:
        tokens_in, tokens_out = completion.tokens_in, completion.tokens_out
        cost = backend.cost(tokens_in, tokens_out)
        result = verify(rule=verify_rule, output=completion.text)
        verification = result.as_dict()
        if not result.passed:
            error_class, detail = "verification_failed", result.detail
    call.tokens_in += tokens_in
    call.tokens_out += tokens_out
    call.cost += cost
    if detail:
        detail = redact(detail).text[:500]
    call.attempts.append(
        Attempt(
            index=index,
            backend=backend.slug,
            locality=backend.locality,
            adapter=backend.adapter,
            status=Attempt.Status.ERROR if error_class else Attempt.Status.OK,
            error_class=error_class,
            detail=detail,
            latency_ms=round(latency_ms, 3),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            verification=verification,
        )
    )
    call.verification = verification
    if error_class:
        call.error_class = error_class
        call.reasons.append(f"{backend.slug}: failed: {error_class}" + (f" ({detail})" if detail else ""))
        # A call cut short by the budget says nothing about the backend's health: "budget" is
        # not an unhealthy class, so it does not count towards opening the circuit.
        breaker.record_failure(backend.slug, error_class=error_class, previous=candidate.breaker)
        return
    assert completion is not None
    breaker.record_success(backend.slug, previous=candidate.breaker)
    call.output = completion.text
    call.backend = backend.slug
    call.error_class = ""
    call.reasons.append(f"{backend.slug}: answered, verification passed")


def _write_log(
    *,
    plan: planner.Plan,
    call: _Call,
    caller: Any,
    metadata: dict[str, Any],
    sha: str,
    chars: int,
    messages: list[dict[str, str]],
) -> RouteLog:
    spec = plan.capability
    if call.backend:
        outcome = RouteLog.Outcome.PRIMARY if spec.routes and call.backend == spec.routes[0] else RouteLog.Outcome.FALLBACK
    else:
        outcome = RouteLog.Outcome.FAILED
    input_preview = ""
    if spec.log_input == "redacted" and settings.FOS_INPUT_PREVIEW_CHARS:
        text = "\n".join(m["content"] for m in messages if m["role"] == "user")
        input_preview = preview(text=text, limit=settings.FOS_INPUT_PREVIEW_CHARS)
    route_log = RouteLog(
        created_at=timezone.now(),
        caller=caller_name(caller),
        capability=spec.slug,
        intent=spec.intent,
        privacy=spec.privacy,
        policy_revision=plan.revision,
        outcome=outcome,
        backend=call.backend,
        fallback_eligible=plan.fallback_eligible,
        fallback_used=outcome == RouteLog.Outcome.FALLBACK,
        reasons=call.reasons,
        verification=call.verification,
        error_class="" if call.backend else (call.error_class or "no_route"),
        input_sha256=sha,
        input_chars=chars,
        input_preview=input_preview,
        latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
        cost_usd=call.cost,
        tokens_in=call.tokens_in,
        tokens_out=call.tokens_out,
        metadata=metadata,
    )
    with transaction.atomic():
        route_log.save(force_insert=True)
        for attempt in call.attempts:
            attempt.route_log = route_log
        Attempt.objects.bulk_create(call.attempts)
    return route_log
