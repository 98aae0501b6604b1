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
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from routing import breaker, log_store, planner, rollup
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
    provider_ms: float = 0.0  # the attempts' time, provider calls and their verification


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
    messages, sha, chars, plan, call = _begin(capability, input_or_messages, metadata)
    _attempt_all(plan=plan, messages=messages, call=call)
    route_log = _build_log(
        plan=plan, call=call, caller=caller, metadata=metadata or {}, sha=sha, chars=chars, messages=messages
    )
    _save_log(route_log, call.attempts)
    if not call.backend:
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
        provider_ms=sum(attempt.latency_ms for attempt in call.attempts),
    )


def _begin(
    capability: str, input_or_messages: str | list[dict[str, str]], metadata: dict[str, Any] | None
) -> tuple[list[dict[str, str]], str, int, planner.Plan, _Call]:
    """Check the input, fingerprint it and plan: everything before the first attempt."""
    started = time.perf_counter()
    messages = normalize_input(input_or_messages)
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    sha, chars = input_fingerprint(input_or_messages, messages)
    plan = planner.plan(capability, input_chars=chars)
    return messages, sha, chars, plan, _Call(started=started, reasons=list(plan.reasons))


def _candidates(*, plan: planner.Plan, call: _Call) -> Iterator[tuple[planner.Candidate, float, bool]]:
    """The plan's candidates that may still be tried, each with its timeout and whether the
    latency budget clipped it. The consumer attempts each one before asking for the next, so the
    fallback rules see the last attempt's failure."""
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
        yield candidate, min(backend.timeout_s, remaining), remaining < backend.timeout_s


def _attempt_all(*, plan: planner.Plan, messages: list[dict[str, str]], call: _Call) -> None:
    spec = plan.capability
    for candidate, timeout, clipped in _candidates(plan=plan, call=call):
        started = time.perf_counter()
        completion: Completion | None = None
        error_class, detail = "", ""
        try:
            completion = get_adapter(candidate.backend).complete(
                messages=messages, instructions=spec.instructions, timeout=timeout
            )
        except Exception as exc:
            error_class, detail = _classify(exc, timeout=timeout, clipped=clipped, adapter=candidate.backend.adapter)
        _finish_attempt(
            call=call,
            candidate=candidate,
            started=started,
            completion=completion,
            error_class=error_class,
            detail=detail,
            verify_rule=spec.verify,
        )
        if call.backend:
            return


def _classify(exc: Exception, *, timeout: float, clipped: bool, adapter: str) -> tuple[str, str]:
    if isinstance(exc, AdapterError):
        if exc.error_class == "timeout" and clipped:
            return "budget", f"stopped when the latency budget ran out ({timeout * 1000:.0f} ms left)"
        return exc.error_class, exc.detail
    # A bug in an adapter must still leave a route log, and must not leak what it held.
    log.exception("adapter %s raised unexpectedly", adapter)
    return "bad_response", f"adapter error ({type(exc).__name__})"


def _finish_attempt(
    *,
    call: _Call,
    candidate: planner.Candidate,
    started: float,
    completion: Completion | None,
    error_class: str,
    detail: str,
    verify_rule: dict[str, Any],
    note: str = "",
) -> Attempt:
    """Verify the answer (if any), account for it, and record the attempt and its breaker outcome."""
    backend = candidate.backend
    latency_ms = (time.perf_counter() - started) * 1000
    verification = None
    tokens_in = tokens_out = 0
    cost = Decimal("0")
    if completion is not None:
        tokens_in, tokens_out = completion.tokens_in, completion.tokens_out
        cost = backend.cost(tokens_in, tokens_out)
        if not error_class:
            result = verify(rule=verify_rule, output=completion.text)
            verification = result.as_dict()
            if not result.passed:
                error_class, detail = "verification_failed", result.detail
    call.tokens_in += tokens_in
    call.tokens_out += tokens_out
    call.cost += cost
    if detail:
        detail = redact(detail).text[:500]
    attempt = Attempt(
        index=len(call.attempts),
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
    call.attempts.append(attempt)
    call.verification = verification
    if error_class:
        call.error_class = error_class
        call.backend = ""
        call.reasons.append(f"{backend.slug}: failed: {error_class}" + (f" ({detail})" if detail else "") + note)
        # A call cut short by the budget says nothing about the backend's health: "budget" is
        # not an unhealthy class, so it does not count towards opening the circuit.
        breaker.record_failure(backend.slug, error_class=error_class, previous=candidate.breaker)
        return attempt
    assert completion is not None
    breaker.record_success(backend.slug, previous=candidate.breaker)
    call.output = completion.text
    call.backend = backend.slug
    call.error_class = ""
    call.reasons.append(f"{backend.slug}: answered, verification passed" + note)
    return attempt


def _build_log(
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
    return route_log


def _save_log(route_log: RouteLog, attempts: list[Attempt]) -> None:
    log_store.save(route_log, attempts)


def capability_spec(capability: str) -> planner.CapabilitySpec:
    """The contract of `capability` from the current snapshot; UnknownCapability if none."""
    spec = planner.load_snapshot().capabilities.get(capability)
    if spec is None:
        raise planner.UnknownCapability(capability)
    return spec


def record_rejection(
    capability: str,
    input_or_messages: str | list[dict[str, str]],
    *,
    caller: Any,
    reason: str,
    metadata: dict[str, Any] | None = None,
) -> RouteLog:
    """Log a call refused before planning (e.g. a rate limit): outcome rejected, no attempt."""
    started = time.perf_counter()
    messages = normalize_input(input_or_messages)
    sha, chars = input_fingerprint(input_or_messages, messages)
    snapshot = planner.load_snapshot()
    spec = snapshot.capabilities.get(capability)
    if spec is None:
        raise planner.UnknownCapability(capability)
    entry = RouteLog(
        created_at=timezone.now(),
        caller=caller_name(caller),
        capability=spec.slug,
        intent=spec.intent,
        privacy=spec.privacy,
        policy_revision=snapshot.revision,
        outcome=RouteLog.Outcome.REJECTED,
        backend="",
        fallback_eligible=False,
        fallback_used=False,
        reasons=[f"rejected: {reason}"],
        verification=None,
        error_class="rate_limited",
        input_sha256=sha,
        input_chars=chars,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        metadata=metadata or {},
    )
    entry.save(force_insert=True)
    return entry


class RouteStream:
    """A routed answer being streamed. Fallback happened (or not) before this object exists:
    once the first token is out, a failure ends the stream with `error` set and is logged.

    Iterate it for text deltas; afterwards `error` is None or (error_class, message), and the
    route log holds the outcome. The route log row is written before the first delta, so
    `route_id` can go out in the response headers; if the process dies mid-stream the row
    still says `incomplete`."""

    def __init__(
        self,
        *,
        plan: planner.Plan,
        call: _Call,
        route_log: RouteLog,
        candidate: planner.Candidate,
        attempt_started: float,
        first: str,
        rest: Iterator[str | Completion],
    ) -> None:
        self.plan = plan
        self.route_log = route_log
        self.error: tuple[str, str] | None = None
        self.tokens_in = call.tokens_in
        self.tokens_out = call.tokens_out
        self._call = call
        self._candidate = candidate
        self._attempt_started = attempt_started
        self._first = first
        self._rest = rest

    @property
    def route_id(self) -> int:
        return self.route_log.pk

    def __iter__(self) -> Iterator[str]:
        if self._call.backend:
            # The whole answer was in hand (and verified) before anything was sent.
            yield self._call.output
            return
        parts: list[str] = []
        completion: Completion | None = None
        error_class, detail = "", ""
        try:
            for item in _chain(self._first, self._rest):
                if isinstance(item, Completion):
                    completion = item
                    break
                if item:
                    parts.append(item)
                    yield item
            if completion is None:
                completion = Completion("".join(parts))
        except GeneratorExit:
            self._finish(completion=None, error_class="", detail="", chunks=len(parts), client_gone=True)
            raise
        except Exception as exc:
            error_class, detail = _classify(exc, timeout=0, clipped=False, adapter=self._candidate.backend.adapter)
            completion = None
        self._finish(completion=completion, error_class=error_class, detail=detail, chunks=len(parts))

    def _finish(
        self, *, completion: Completion | None, error_class: str, detail: str, chunks: int, client_gone: bool = False
    ) -> None:
        call, entry = self._call, self.route_log
        note = f" after {chunks} chunks were streamed" if chunks else ""
        if client_gone:
            attempt = _client_gone(call=call, candidate=self._candidate, started=self._attempt_started, note=note)
        else:
            if error_class and chunks:
                note += "; no fallback once the first token is sent"
            attempt = _finish_attempt(
                call=call,
                candidate=self._candidate,
                started=self._attempt_started,
                completion=completion,
                error_class=error_class,
                detail=detail,
                verify_rule=self.plan.capability.verify,
                note=note,
            )
        self.tokens_in, self.tokens_out = call.tokens_in, call.tokens_out
        if not call.backend:
            entry.outcome = RouteLog.Outcome.FAILED
            self.error = (call.error_class, f"{call.error_class}{note}")
        entry.backend = call.backend
        entry.fallback_used = entry.outcome == RouteLog.Outcome.FALLBACK
        entry.error_class = "" if call.backend else call.error_class
        entry.reasons = call.reasons
        entry.verification = call.verification
        entry.latency_ms = round((time.perf_counter() - call.started) * 1000, 3)
        entry.cost_usd = call.cost
        entry.tokens_in, entry.tokens_out = call.tokens_in, call.tokens_out
        with transaction.atomic():
            entry.save(
                update_fields=[
                    "outcome", "backend", "fallback_used", "error_class", "reasons", "verification",
                    "latency_ms", "cost_usd", "tokens_in", "tokens_out",
                ]
            )
            attempt.route_log = entry
            attempt.save(force_insert=True)
            # The row was written when the stream started: if its hour has ended since, the
            # hour's rollup may already count it as it was then.
            rollup.invalidate(created_at=entry.created_at)


def _chain(first: str, rest: Iterator[str | Completion]) -> Iterator[str | Completion]:
    yield first
    yield from rest


def _client_gone(*, call: _Call, candidate: planner.Candidate, started: float, note: str) -> Attempt:
    """Record an attempt cut off by the client, which says nothing about the backend's health."""
    backend = candidate.backend
    attempt = Attempt(
        index=len(call.attempts),
        backend=backend.slug,
        locality=backend.locality,
        adapter=backend.adapter,
        status=Attempt.Status.ERROR,
        error_class="connection",
        detail="the client went away mid-stream",
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    call.attempts.append(attempt)
    call.error_class = "connection"
    call.backend = ""
    call.reasons.append(f"{backend.slug}: the client went away{note}")
    return attempt


def open_stream(
    capability: str,
    input_or_messages: str | list[dict[str, str]],
    *,
    caller: Any = None,
    metadata: dict[str, Any] | None = None,
) -> RouteStream:
    """Start a streamed call: try routes until one yields its first token (falling back as the
    contract allows), write the route log, and return the stream. Raises RouteFailed, after
    logging, when no route starts answering."""
    messages, sha, chars, plan, call = _begin(capability, input_or_messages, metadata)
    spec = plan.capability

    def log() -> RouteLog:
        return _build_log(plan=plan, call=call, caller=caller, metadata=metadata or {}, sha=sha, chars=chars, messages=messages)

    for candidate, timeout, clipped in _candidates(plan=plan, call=call):
        attempt_started = time.perf_counter()
        first: str | Completion | None = None
        error_class, detail = "", ""
        rest: Iterator[str | Completion] = iter(())
        try:
            rest = iter(get_adapter(candidate.backend).stream(messages=messages, instructions=spec.instructions, timeout=timeout))
            first = next(rest)
            while first == "":
                first = next(rest)
        except StopIteration:
            error_class, detail = "bad_response", "the stream ended without an answer"
        except Exception as exc:
            error_class, detail = _classify(exc, timeout=timeout, clipped=clipped, adapter=candidate.backend.adapter)
        if isinstance(first, str):
            # The first token is in hand: from here on there is no fallback. Log now, so the
            # route id can go out with the response headers.
            entry = log()
            entry.backend = candidate.backend.slug
            entry.outcome = (
                RouteLog.Outcome.PRIMARY if candidate.backend.slug == spec.routes[0] else RouteLog.Outcome.FALLBACK
            )
            entry.fallback_used = entry.outcome == RouteLog.Outcome.FALLBACK
            entry.error_class = "incomplete"
            entry.reasons = [*call.reasons, f"{candidate.backend.slug}: streaming"]
            _save_log(entry, call.attempts)
            return RouteStream(
                plan=plan, call=call, route_log=entry, candidate=candidate,
                attempt_started=attempt_started, first=first, rest=rest,
            )
        # Either an error before the first token, or the whole answer at once (verified now,
        # so that a failed verification can still fall back).
        _finish_attempt(
            call=call, candidate=candidate, started=attempt_started, completion=first,
            error_class=error_class, detail=detail, verify_rule=spec.verify,
        )
        if call.backend:
            entry = log()
            _save_log(entry, call.attempts)
            return RouteStream(
                plan=plan, call=call, route_log=entry, candidate=candidate,
                attempt_started=attempt_started, first="", rest=iter(()),
            )
    entry = log()
    _save_log(entry, call.attempts)
    raise RouteFailed(capability=capability, route_id=entry.pk, reasons=entry.reasons, error_class=call.error_class)
