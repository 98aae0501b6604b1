"""The policy as one value: snapshots, revisions, and the current revision number.

Every change to backends, capabilities or routes ends with `record_revision()`, which stores
the whole policy as it now stands. The router plans from the latest snapshot and each route log
names the revision it ran under, so any past decision can be explained against the policy as
it was.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max

from registry.models import Backend, Capability, PolicyRevision, Route

REVISION_CACHE_KEY = "policy:revision"

# Bumped whenever this process records a revision, so the router's short-lived memo of shared
# state (see routing.planner) notices an edit made in this very process at once.
_local_edits = 0


def local_edits() -> int:
    return _local_edits


def _number(value: Any) -> float | int:
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


def backend_policy(backend: Backend) -> dict[str, Any]:
    entry: dict[str, Any] = {"adapter": backend.adapter, "locality": backend.locality}
    if backend.name and backend.name != backend.slug:
        entry["name"] = backend.name
    if backend.adapter == Backend.Adapter.TOOL:
        entry["tool"] = backend.tool
        entry["config"] = backend.config or {}
    else:
        entry["base_url"] = backend.base_url
        entry["model"] = backend.model
    entry["secret"] = backend.secret_ref
    entry["cost_in_per_mtok"] = _number(backend.cost_in_per_mtok)
    entry["cost_out_per_mtok"] = _number(backend.cost_out_per_mtok)
    entry["timeout_s"] = _number(backend.timeout_s)
    entry["enabled"] = backend.enabled
    if backend.notes:
        entry["notes"] = backend.notes
    return entry


def capability_policy(capability: Capability, routes: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"intent": capability.intent, "privacy": capability.privacy}
    if capability.name and capability.name != capability.slug:
        entry["name"] = capability.name
    if capability.max_cost_usd is not None:
        entry["max_cost_usd"] = _number(capability.max_cost_usd)
    entry["latency_budget_ms"] = capability.latency_budget_ms
    entry["fallback"] = capability.fallback
    entry["fallback_on"] = list(capability.fallback_on)
    entry["instructions"] = capability.instructions
    if capability.instructions_private:
        entry["instructions_private"] = True
    entry["verify"] = capability.verify
    entry["log_input"] = capability.log_input
    entry["routes"] = routes
    return entry


def build_snapshot() -> dict[str, Any]:
    """The whole current policy, in the shape of the policy file (active routes in order)."""
    backends = {b.slug: backend_policy(b) for b in Backend.objects.order_by("slug")}
    routes: dict[int, list[str]] = {}
    active = (
        Route.objects.filter(status=Route.Status.ACTIVE)
        .order_by("capability_id", "position", "id")
        .values_list("capability_id", "backend__slug")
    )
    for capability_id, backend_slug in active:
        routes.setdefault(capability_id, []).append(backend_slug)
    capabilities = {
        c.slug: capability_policy(c, routes.get(c.pk, [])) for c in Capability.objects.order_by("slug")
    }
    return {"backends": backends, "capabilities": capabilities}


def record_revision(*, author: str, summary: str) -> PolicyRevision:
    """Append a revision holding the policy as it stands now, inside the caller's transaction."""
    snapshot = build_snapshot()
    for _ in range(5):
        number = (PolicyRevision.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            with transaction.atomic():
                revision = PolicyRevision.objects.create(
                    number=number, author=author[:150], summary=summary, snapshot=snapshot
                )
        except IntegrityError:
            continue  # another writer took this number; take the next one
        # Forget the cached number now (this transaction reads its own write) and publish the new
        # one once it is committed, so other processes never plan from an uncommitted policy.
        cache.delete(REVISION_CACHE_KEY)
        transaction.on_commit(lambda: _publish(revision.number))
        _count_local_edit()
        return revision
    raise RuntimeError("could not allocate a policy revision number")


def _count_local_edit() -> None:
    global _local_edits
    _local_edits += 1


def _publish(number: int) -> None:
    cache.set(REVISION_CACHE_KEY, number, timeout=None)
    _count_local_edit()


def current_revision_number() -> int:
    """The latest revision number, from the shared cache when it knows it (0: no policy yet)."""
    number = cache.get(REVISION_CACHE_KEY)
    if number is None:
        number = PolicyRevision.objects.aggregate(n=Max("number"))["n"] or 0
        cache.set(REVISION_CACHE_KEY, number, timeout=None)
    return number
