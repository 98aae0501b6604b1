"""Route proposals and their review: the only way a ticket changes the policy.

- `propose_route` adds a `registry.Route` in status proposed, linked to the ticket. A proposed
  route is not in the policy snapshot, so it never serves traffic.
- `edit_proposal` changes a proposal's backend or position. If the route had been approved,
  that sends it back to review: status proposed, approval cleared, out of the live policy
  (recorded as a policy revision), because it was approved as it stood.
- `approve` makes the route active at its position, after `judge_run` found that the cited
  comparison run meets every criterion of the ticket, or with the reviewer's override reason.
  The active routes from that position on move down one place, or the one at that place is
  retired, as the proposal says. Moving down for an approval keeps those routes' approvals:
  the reviewer approved the resulting order, which the review form shows. One policy revision
  names the ticket and the reviewer.
- `reject` marks the route rejected.

Nobody decides on a route they proposed (separation of duties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from registry.models import Backend, Route
from registry.policy import record_revision
from routing.comparisons import summarize
from routing.models import ComparisonResult, ComparisonRun
from tickets.criteria import Verdict, judge
from tickets.models import Review, RouteProposal, Ticket


class ReviewError(ValueError):
    """A decision that cannot be taken as asked; the message says why."""


class OwnProposal(PermissionDenied):
    """The reviewer proposed this route."""

    def __init__(self) -> None:
        super().__init__("Separation of duties: nobody approves or rejects a route they proposed.")


def check_reviewer(*, proposal: RouteProposal, reviewer: Any) -> None:
    if proposal.route.proposed_by_id is not None and proposal.route.proposed_by_id == reviewer.pk:
        raise OwnProposal()


def active_order(*, capability_id: int, lock: bool = False) -> list[Route]:
    routes = Route.objects.filter(capability_id=capability_id, status=Route.Status.ACTIVE).select_related("backend")
    if lock:
        routes = routes.select_for_update()
    return list(routes.order_by("position", "id"))


def order_after_approval(*, active: list[Route], route: Route, displaced: str) -> tuple[list[Route], list[Route]]:
    """The active routes once `route` is approved at its position, and the routes it retires."""
    order = [r for r in active if r.pk != route.pk]
    rank = min(route.position, len(order))
    retired = []
    if displaced == RouteProposal.Displaced.RETIRE and rank < len(order):
        retired.append(order.pop(rank))
    order.insert(rank, route)
    return order, retired


def _names(routes: list[Route]) -> str:
    return "[" + ", ".join(r.backend.slug for r in routes) + "]"


def propose_route(
    *, ticket: Ticket, backend: Backend, position: int, displaced: str, note: str, proposed_by: Any
) -> RouteProposal:
    with transaction.atomic():
        route = Route.objects.create(
            capability=ticket.capability,
            backend=backend,
            position=position,
            status=Route.Status.PROPOSED,
            proposed_by=proposed_by,
            ticket_ref=ticket.key,
        )
        return RouteProposal.objects.create(ticket=ticket, route=route, displaced=displaced, note=note)


@dataclass(frozen=True)
class EditOutcome:
    sent_back: bool
    summary: str


def edit_proposal(*, proposal: RouteProposal, backend: Backend, position: int, displaced: str, author: str) -> EditOutcome:
    """Change a proposal; an approved route whose backend or position changes goes back to review."""
    with transaction.atomic():
        route = Route.objects.select_for_update().select_related("backend", "capability").get(pk=proposal.route_id)
        if route.status not in (Route.Status.PROPOSED, Route.Status.ACTIVE):
            raise ReviewError(f"a {route.status} route cannot be edited")
        sent_back = route.needs_review_after(backend_id=backend.pk, position=position)
        before = f"{route.backend.slug} at position {route.position}"
        was_active = route.status == Route.Status.ACTIVE
        route.backend, route.position = backend, position
        if sent_back:
            route.send_back_to_review()
        route.save(update_fields=["backend", "position", "status", "approved_at", "approved_by", "updated_at"])
        proposal.displaced = displaced
        proposal.save(update_fields=["displaced"])
        summary = f"{proposal.ticket.key}: {author} changed the proposal {before} -> {backend.slug} at position {position}"
        if sent_back:
            summary += "; sent back to review (changed after approval)"
            if was_active:
                record_revision(author=author, summary=f"{route.capability.slug}: {summary}")
        return EditOutcome(sent_back=sent_back, summary=summary)


def results_for(run: ComparisonRun) -> list[ComparisonResult]:
    return list(ComparisonResult.objects.filter(run=run))


def evidence_problem(*, ticket: Ticket, proposal: RouteProposal, run: ComparisonRun) -> str:
    """Why `run` cannot stand as evidence for `proposal`, or "" when it can."""
    if run.ticket_ref != ticket.key or run.capability_id != ticket.capability_id:
        return f"comparison run {run.pk} does not belong to {ticket.key}"
    if run.status != ComparisonRun.Status.DONE:
        return f"comparison run {run.pk} is {run.status}, not done"
    lane = next((lane for lane in run.routes if lane["route"] == proposal.route_id), None)
    if lane is None:
        return f"comparison run {run.pk} did not compare the proposed route"
    if lane["backend"] != proposal.route.backend.slug:
        return f"comparison run {run.pk} ran {lane['backend']} for this route, which now goes to {proposal.route.backend.slug}"
    return ""


def judge_run(*, ticket: Ticket, proposal: RouteProposal, run: ComparisonRun) -> Verdict:
    """The proposed route's results in `run` against every criterion of the ticket."""
    summaries = {s.route_id: s for s in summarize(run, results_for(run))}
    return judge(list(ticket.criteria.all()), summaries.get(proposal.route_id))


def _decide_checks(*, proposal: RouteProposal, reviewer: Any) -> Route:
    route = Route.objects.select_for_update().select_related("backend", "capability").get(pk=proposal.route_id)
    check_reviewer(proposal=proposal, reviewer=reviewer)
    if route.status != Route.Status.PROPOSED:
        raise ReviewError(f"the route is {route.status}: there is nothing to decide")
    return route


def approve(
    *, proposal: RouteProposal, reviewer: Any, comment: str, run: ComparisonRun, override_reason: str = ""
) -> Review:
    ticket = proposal.ticket
    with transaction.atomic():
        route = _decide_checks(proposal=proposal, reviewer=reviewer)
        proposal.route = route
        problem = evidence_problem(ticket=ticket, proposal=proposal, run=run)
        if problem:
            raise ReviewError(problem)
        verdict = judge_run(ticket=ticket, proposal=proposal, run=run)
        if not verdict.met and not override_reason.strip():
            raise ReviewError(f"the run {verdict.summary}: record an override reason to approve anyway")
        before = active_order(capability_id=route.capability_id, lock=True)
        after, retired = order_after_approval(active=before, route=route, displaced=proposal.displaced)
        now = timezone.now()
        for old in retired:
            old.status = Route.Status.RETIRED
            old.save(update_fields=["status", "updated_at"])
        for position, r in enumerate(after):
            r.position = position
            if r.pk == route.pk:
                r.status, r.approved_by, r.approved_at = Route.Status.ACTIVE, reviewer, now
            r.save(update_fields=["position", "status", "approved_by", "approved_at", "updated_at"])
        review = Review.objects.create(
            ticket=ticket,
            proposal=proposal,
            reviewer=reviewer,
            decision=Review.Decision.APPROVED,
            comment=comment,
            comparison_run=run,
            override_reason=override_reason.strip(),
            criteria_results=[r.as_dict() for r in verdict.results],
        )
        ticket.status = Ticket.Status.ACCEPTED
        ticket.save(update_fields=["status", "updated_at"])
        name = reviewer.get_username()
        summary = (
            f"{route.capability.slug}: {ticket.key} approved by {name}: {route.backend.slug} active at position "
            f"{after.index(route)} (comparison run {run.pk}: {verdict.summary}"
            + ("; overridden" if override_reason.strip() else "")
            + f"); routes {_names(before)} -> {_names(after)}"
        )
        if retired:
            summary += f"; retired {', '.join(r.backend.slug for r in retired)}"
        record_revision(author=name, summary=summary)
        return review


def reject(*, proposal: RouteProposal, reviewer: Any, comment: str, run: ComparisonRun | None = None) -> Review:
    with transaction.atomic():
        route = _decide_checks(proposal=proposal, reviewer=reviewer)
        route.status = Route.Status.REJECTED
        route.save(update_fields=["status", "updated_at"])
        verdict = judge_run(ticket=proposal.ticket, proposal=proposal, run=run) if run else None
        return Review.objects.create(
            ticket=proposal.ticket,
            proposal=proposal,
            reviewer=reviewer,
            decision=Review.Decision.REJECTED,
            comment=comment,
            comparison_run=run,
            criteria_results=[r.as_dict() for r in verdict.results] if verdict else [],
        )
