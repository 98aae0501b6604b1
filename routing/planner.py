"""The planner: from a capability's contract and its active routes, an ordered plan and a
readable reason for every route kept or skipped. It calls nothing and writes nothing, so the
console's dry run is the same code as a live call.

Policy comes from an in-process snapshot of the latest policy revision. A plan reads the
current revision number and the breaker state of the capability's backends in one cache round
trip (reused for FOS_SHARED_STATE_TTL_S), and reloads the snapshot only when the number has
moved: a request costs no policy query.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache

from registry.contracts import validate_secret_ref
from registry.models import PolicyRevision
from registry.policy import REVISION_CACHE_KEY, current_revision_number
from registry.policy import local_edits as policy_edits
from registry.secret_refs import resolves
from routing import breaker
from routing.adapters.base import BackendSpec

# Without a model's answer in hand, the planner assumes answers of about this many tokens when
# it estimates a call's cost against the contract's tolerance.
EXPECTED_OUTPUT_TOKENS = {
    "classification": 16,
    "extraction": 128,
    "lookup": 128,
    "judgment": 256,
    "review": 512,
    "transformation": 512,
    "generation": 1024,
}
CHARS_PER_TOKEN = 4


class UnknownCapability(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"unknown capability {slug!r}")
        self.slug = slug


@dataclass(frozen=True)
class CapabilitySpec:
    slug: str
    intent: str
    privacy: str
    max_cost_usd: Decimal | None
    latency_budget_ms: int
    fallback: str
    fallback_on: frozenset[str]
    instructions: str
    verify: dict[str, Any] = field(hash=False)
    log_input: str
    routes: tuple[str, ...]

    @classmethod
    def from_policy(cls, slug: str, entry: dict[str, Any]) -> CapabilitySpec:
        max_cost = entry.get("max_cost_usd")
        return cls(
            slug=slug,
            intent=entry["intent"],
            privacy=entry["privacy"],
            max_cost_usd=None if max_cost is None else Decimal(str(max_cost)),
            latency_budget_ms=int(entry.get("latency_budget_ms", 30_000)),
            fallback=entry.get("fallback", "next_route"),
            fallback_on=frozenset(entry.get("fallback_on", ())),
            instructions=entry.get("instructions", ""),
            verify=entry.get("verify") or {"kind": "non_empty"},
            log_input=entry.get("log_input", "hash"),
            routes=tuple(entry.get("routes", ())),
        )

    @property
    def local_only(self) -> bool:
        return self.privacy == "local_only"


@dataclass(frozen=True)
class PolicySnapshot:
    revision: int
    backends: dict[str, BackendSpec]
    capabilities: dict[str, CapabilitySpec]

    @classmethod
    def from_revision(cls, revision: PolicyRevision | None) -> PolicySnapshot:
        if revision is None:
            return cls(revision=0, backends={}, capabilities={})
        policy = revision.snapshot
        return cls(
            revision=revision.number,
            backends={slug: BackendSpec.from_policy(slug, e) for slug, e in policy.get("backends", {}).items()},
            capabilities={
                slug: CapabilitySpec.from_policy(slug, e) for slug, e in policy.get("capabilities", {}).items()
            },
        )


@dataclass(frozen=True)
class Candidate:
    backend: BackendSpec
    position: int  # in the capability's route list: 0 is the primary
    breaker: breaker.BreakerState
    estimated_cost: Decimal


@dataclass(frozen=True)
class Plan:
    capability: CapabilitySpec
    revision: int
    candidates: tuple[Candidate, ...]
    reasons: tuple[str, ...]

    @property
    def fallback_eligible(self) -> bool:
        return self.capability.fallback == "next_route" and len(self.candidates) > 1


_lock = threading.Lock()
_snapshot = PolicySnapshot(revision=-1, backends={}, capabilities={})


def load_snapshot(revision: int | None = None) -> PolicySnapshot:
    """The in-process snapshot, reloaded from the database when `revision` differs from it."""
    global _snapshot
    if revision is None:
        revision = current_revision_number()
    current = _snapshot
    if current.revision == revision:
        return current
    with _lock:
        if _snapshot.revision != revision:
            latest = PolicyRevision.objects.order_by("-number").first()
            _snapshot = PolicySnapshot.from_revision(latest)
        return _snapshot


def forget_snapshot() -> None:
    """Drop the in-process snapshot and shared-state memo (tests; a process that knows the
    policy changed)."""
    global _snapshot
    with _lock:
        _snapshot = PolicySnapshot(revision=-1, backends={}, capabilities={})
        _memos.clear()


def estimate_tokens_in(*, text_chars: int, instructions: str) -> int:
    return (text_chars + len(instructions)) // CHARS_PER_TOKEN + 1


def _money(value: Decimal) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


@dataclass(frozen=True)
class _Memo:
    """Shared state (the revision number and the routes' breaker keys) as last read."""

    values: dict[str, Any]
    slugs: tuple[str, ...]
    read_at: float
    local: tuple[int, int]


_memos: dict[str, _Memo] = {}


def _shared_state(capability: str, slugs: list[str]) -> dict[str, Any]:
    """The revision number and breaker state for `slugs`, in one cache round trip, reused for
    up to FOS_SHARED_STATE_TTL_S so that a busy process does not ask the cache on every call.
    A change made by this process (a revision, a breaker transition) is seen at once; one made
    by another process within the TTL."""
    now = time.monotonic()
    local = (policy_edits(), breaker.local_changes())
    memo = _memos.get(capability)
    ttl = settings.FOS_SHARED_STATE_TTL_S
    if memo is not None and memo.local == local and memo.slugs == tuple(slugs) and now - memo.read_at < ttl:
        return memo.values
    values = cache.get_many([REVISION_CACHE_KEY, *breaker.keys_for(slugs)])
    if ttl > 0:
        _memos[capability] = _Memo(values=values, slugs=tuple(slugs), read_at=now, local=local)
    return values


def plan(capability: str, *, input_chars: int) -> Plan:
    """Plan a call of `capability` for an input of `input_chars` characters."""
    snapshot = _snapshot
    spec = snapshot.capabilities.get(capability)
    slugs = list(spec.routes) if spec else []
    values = _shared_state(capability, slugs)
    revision = values.get(REVISION_CACHE_KEY)
    if revision is None or revision != snapshot.revision:
        if revision is None:
            _memos.pop(capability, None)  # read without a number: do not reuse it
        snapshot = load_snapshot(revision)
        spec = snapshot.capabilities.get(capability)
        if spec is None:
            raise UnknownCapability(capability)
        if list(spec.routes) != slugs:
            slugs = list(spec.routes)
            values = _shared_state(capability, slugs)
    if spec is None:
        raise UnknownCapability(capability)
    return _plan_from(snapshot=snapshot, spec=spec, breaker_values=values, input_chars=input_chars)


def _plan_from(
    *, snapshot: PolicySnapshot, spec: CapabilitySpec, breaker_values: dict[str, Any], input_chars: int
) -> Plan:
    reasons: list[str] = []
    candidates: list[Candidate] = []
    tokens_in = estimate_tokens_in(text_chars=input_chars, instructions=spec.instructions)
    tokens_out = EXPECTED_OUTPUT_TOKENS.get(spec.intent, 512)
    if not spec.routes:
        reasons.append("no active routes: import a policy or activate a route")
    for position, slug in enumerate(spec.routes):
        role = "primary" if position == 0 else f"fallback {position}"
        backend = snapshot.backends.get(slug)
        if backend is None:
            reasons.append(f"{slug} ({role}): skipped: not in the registry")
            continue
        if spec.local_only and backend.locality != "local":
            reasons.append(f"{slug} ({role}): skipped: hosted backend excluded: privacy=local_only")
            continue
        if not backend.enabled:
            reasons.append(f"{slug} ({role}): skipped: backend disabled")
            continue
        if backend.secret and not resolves(backend.secret):
            # Name the reference only when it is one: a value pasted by mistake must not reach a log.
            shown = backend.secret if not validate_secret_ref(backend.secret) else "(not a valid reference)"
            reasons.append(f"{slug} ({role}): skipped: secret reference {shown} does not resolve")
            continue
        estimate = backend.cost(tokens_in, tokens_out)
        if spec.max_cost_usd is not None and estimate > spec.max_cost_usd:
            reasons.append(
                f"{slug} ({role}): skipped: estimated cost {_money(estimate)} > tolerance {_money(spec.max_cost_usd)}"
            )
            continue
        state = breaker.state_from(breaker_values, slug)
        if state.state == "open":
            reasons.append(
                f"{slug} ({role}): skipped: circuit open since {state.opened_label()} UTC "
                f"after {state.failures} consecutive failures"
            )
            continue
        note = f"{backend.locality}, {backend.adapter}"
        if backend.cost_in_per_mtok or backend.cost_out_per_mtok:
            note += f", estimated cost {_money(estimate)}"
        if state.state == "half_open":
            note += f", circuit half-open since {state.opened_label()} UTC: trial call"
        reasons.append(f"{slug} ({role}): kept ({note})")
        candidates.append(Candidate(backend=backend, position=position, breaker=state, estimated_cost=estimate))
    if spec.routes and not candidates:
        reasons.append("no route is eligible: failing closed")
    return Plan(capability=spec, revision=snapshot.revision, candidates=tuple(candidates), reasons=tuple(reasons))
