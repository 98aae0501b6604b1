"""Reordering, enabling and disabling a capability's routes from the console.

A route's place in the policy is its rank among the capability's active routes (the planner
orders them by position). Moving one swaps it with its neighbour and rewrites the positions of
the active routes as 0..n-1. A route a reviewer approved was approved *at its place*: a change
of rank sends it back to review (status proposed, approval cleared), so it stops serving until
a reviewer approves it again. Rewriting positions alone (closing the gap a disabled route left)
changes no rank and keeps approvals.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from registry.models import Capability, PolicyRevision, Route
from registry.policy import record_revision

DIRECTIONS = ("up", "down")


def active_routes(*, capability: Capability, lock: bool = False) -> list[Route]:
    routes = capability.routes.filter(status=Route.Status.ACTIVE).select_related("backend", "approved_by")
    if lock:
        # Only the route rows: PostgreSQL cannot lock the nullable side of the approver join.
        routes = routes.select_for_update(of=("self",))
    return list(routes.order_by("position", "id"))


def moved_order(*, routes: list[Route], route_id: int, direction: str) -> list[Route] | None:
    """The active routes after moving `route_id` one place; None when it cannot move that way."""
    ids = [route.pk for route in routes]
    if route_id not in ids or direction not in DIRECTIONS:
        return None
    index = ids.index(route_id)
    other = index - 1 if direction == "up" else index + 1
    if not 0 <= other < len(routes):
        return None
    order = list(routes)
    order[index], order[other] = order[other], order[index]
    return order


def approvals_lost(*, before: list[Route], after: list[Route]) -> list[Route]:
    """Approved routes whose rank differs between the two orders."""
    rank = {route.pk: index for index, route in enumerate(before)}
    return [route for index, route in enumerate(after) if route.approved_at is not None and rank.get(route.pk) != index]


def enable_position(*, route: Route, routes: list[Route]) -> int:
    """Where a re-enabled route goes: last, keeping its old position when that already is last."""
    after_last = max((r.position for r in routes), default=-1) + 1
    return max(route.position, after_last)


def enable_needs_review(*, route: Route, routes: list[Route]) -> bool:
    """Whether enabling this retired route among `routes` would send it back to review."""
    return route.needs_review_after(backend_id=route.backend_id, position=enable_position(route=route, routes=routes))


def _names(routes: list[Route]) -> str:
    return "[" + ", ".join(route.backend.slug for route in routes) + "]"


@dataclass(frozen=True)
class Outcome:
    revision: PolicyRevision
    summary: str


def apply_order(*, capability: Capability, before: list[Route], after: list[Route], author: str, what: str) -> Outcome:
    """Write `after` as the order of the active routes (positions 0..n-1), send the approved
    routes whose rank changed back to review, and record one revision. Call inside a transaction
    that read `before` with a lock."""
    lost = approvals_lost(before=before, after=after)
    for position, route in enumerate(after):
        route.position = position
        if route in lost:
            route.send_back_to_review()
        route.save(update_fields=["position", "status", "approved_at", "approved_by", "updated_at"])
    summary = f"{capability.slug}: {what}; routes {_names(before)} -> {_names(after)}"
    if lost:
        summary += f"; {', '.join(r.backend.slug for r in lost)} sent back to review (moved after approval)"
    return Outcome(record_revision(author=author, summary=summary), summary)


def set_enabled(*, capability: Capability, route: Route, enabled: bool, author: str) -> Outcome:
    """Disable an active route (retired) or enable a retired one (active, at the end), and record
    one revision. An approved route enabled at another position goes back to review instead."""
    with transaction.atomic():
        if enabled:
            position = enable_position(route=route, routes=active_routes(capability=capability, lock=True))
            moved = route.needs_review_after(backend_id=route.backend_id, position=position)
            route.position, route.status = position, Route.Status.ACTIVE
            if moved:
                route.send_back_to_review()
        else:
            route.status = Route.Status.RETIRED
        route.save(update_fields=["position", "status", "approved_at", "approved_by", "updated_at"])
        name = f"{capability.slug}: {'enabled' if enabled else 'disabled'} route {route.backend.slug}"
        if not enabled:
            summary = f"{name} (was position {route.position})"
        elif route.status == Route.Status.PROPOSED:
            summary = f"{name} at position {route.position}; sent back to review (moved after approval)"
        else:
            summary = f"{name} at position {route.position}"
        return Outcome(record_revision(author=author, summary=summary), summary)
