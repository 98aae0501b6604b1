"""Proposals and reviews: separation of duties, approval into the live policy, and losing an
approval by editing the route."""

from __future__ import annotations

from typing import Any

import pytest

from registry.models import Capability, PolicyRevision, Route
from routing import comparisons, run
from routing.models import ComparisonRun, EvaluationCase
from tests.tickets.conftest import active, backend, finished_run, propose
from tickets import review
from tickets.models import AcceptanceCriterion, Review, RouteProposal, Ticket

pytestmark = pytest.mark.django_db


def compared(ticket: Ticket, proposal: RouteProposal, cases: list[EvaluationCase]) -> ComparisonRun:
    """A finished comparison of the active routes and the proposal on `cases`."""
    routes = [*ticket.capability.routes.filter(status="active").order_by("position"), proposal.route]
    comparison = finished_run(ticket, routes, cases)
    assert comparison.status == "done"
    return comparison


def test_it_keeps_a_proposed_route_out_of_live_traffic(ticket: Ticket, operator: Any, sim: Any) -> None:
    proposal = propose(ticket, operator)
    assert proposal.route.status == "proposed" and proposal.route.ticket_ref == "FOS-142"
    result = run("classify-fast", "the invoice is wrong")
    assert result.backend == "spark"
    assert sim.calls("tag=candidate,answer=billing") == 0


def test_it_approves_into_the_live_policy_which_the_planner_then_uses(
    ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any, sim: Any
) -> None:
    proposal = propose(ticket, operator)
    evidence = compared(ticket, proposal, cases)
    revisions = PolicyRevision.objects.count()

    decision = review.approve(proposal=proposal, reviewer=reviewer, comment="cheaper, as good", run=evidence)

    route = Route.objects.get(pk=proposal.route_id)
    assert (route.status, route.position, route.approved_by) == ("active", 0, reviewer)
    assert route.approved_at is not None
    assert active(ticket.capability) == ["candidate", "spark", "triage"]  # the old primary moved down
    assert decision.decision == "approved" and decision.override_reason == ""
    assert [r["met"] for r in decision.criteria_results] == [True, True]
    ticket.refresh_from_db()
    assert ticket.status == "accepted"
    assert PolicyRevision.objects.count() == revisions + 1
    latest = PolicyRevision.objects.order_by("-number").first()
    assert latest.author == "rita-reviewer"
    assert "FOS-142 approved by rita-reviewer" in latest.summary
    assert "routes [spark, triage] -> [candidate, spark, triage]" in latest.summary
    assert latest.snapshot["capabilities"]["classify-fast"]["routes"] == ["candidate", "spark", "triage"]

    calls = sim.calls("tag=candidate,answer=billing")
    result = run("classify-fast", "the invoice is wrong")
    assert (result.backend, result.outcome, result.output) == ("candidate", "primary", "billing")
    assert sim.calls("tag=candidate,answer=billing") == calls + 1


def test_it_retires_the_old_primary_when_the_proposal_says_so(
    ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any
) -> None:
    proposal = propose(ticket, operator, displaced="retire")
    review.approve(proposal=proposal, reviewer=reviewer, comment="replace it", run=compared(ticket, proposal, cases))
    assert active(ticket.capability) == ["candidate", "triage"]
    assert ticket.capability.routes.get(backend__slug="spark").status == "retired"
    assert "retired spark" in PolicyRevision.objects.order_by("-number").first().summary
    assert run("classify-fast", "refund please").backend == "candidate"


def test_it_inserts_a_fallback_at_its_position(ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any) -> None:
    proposal = propose(ticket, operator, position=1)
    review.approve(proposal=proposal, reviewer=reviewer, comment="a better fallback", run=compared(ticket, proposal, cases))
    assert active(ticket.capability) == ["spark", "candidate", "triage"]
    positions = list(ticket.capability.routes.filter(status="active").order_by("position").values_list("position", flat=True))
    assert positions == [0, 1, 2]


def test_it_lets_nobody_decide_on_a_route_they_proposed(ticket: Ticket, criteria: Any, cases: Any, reviewer: Any) -> None:
    proposal = propose(ticket, reviewer)  # a reviewer who also proposes (say, a superuser's habit)
    evidence = compared(ticket, proposal, cases)
    with pytest.raises(review.OwnProposal, match="nobody approves or rejects a route they proposed"):
        review.approve(proposal=proposal, reviewer=reviewer, comment="mine is great", run=evidence)
    with pytest.raises(review.OwnProposal):
        review.reject(proposal=proposal, reviewer=reviewer, comment="never mind")
    assert Route.objects.get(pk=proposal.route_id).status == "proposed"
    assert not Review.objects.exists()


def test_it_needs_every_criterion_met_or_an_override_reason(
    ticket: Ticket, cases: Any, operator: Any, reviewer: Any
) -> None:
    AcceptanceCriterion.objects.create(ticket=ticket, metric="mean_cost_usd", comparison="at_most", threshold=0)
    proposal = propose(ticket, operator)  # the candidate costs money
    evidence = compared(ticket, proposal, cases)
    with pytest.raises(review.ReviewError, match="misses 1 of 1 criteria: record an override reason"):
        review.approve(proposal=proposal, reviewer=reviewer, comment="ok", run=evidence)
    assert Route.objects.get(pk=proposal.route_id).status == "proposed"

    decision = review.approve(proposal=proposal, reviewer=reviewer, comment="ok", run=evidence, override_reason="cost is paid by the team budget")
    assert decision.override_reason == "cost is paid by the team budget"
    assert decision.criteria_results[0]["met"] is False
    assert "overridden" in PolicyRevision.objects.order_by("-number").first().summary


def test_it_needs_an_override_when_the_ticket_has_no_criteria(ticket: Ticket, cases: Any, operator: Any, reviewer: Any) -> None:
    proposal = propose(ticket, operator)
    with pytest.raises(review.ReviewError, match="no acceptance criteria"):
        review.approve(proposal=proposal, reviewer=reviewer, comment="ok", run=compared(ticket, proposal, cases))


def test_it_refuses_evidence_that_does_not_fit(
    ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any, policy: Capability
) -> None:
    proposal = propose(ticket, operator)
    other = propose(ticket, operator, slug="triage", position=2)
    without = comparisons.create_run(
        capability=policy, routes=list(policy.routes.filter(status="active")), cases=cases, ticket_ref=ticket.key
    )
    assert review.evidence_problem(ticket=ticket, proposal=proposal, run=without) == f"comparison run {without.pk} is queued, not done"
    comparisons.execute_run(run_id=without.pk)
    without.refresh_from_db()
    assert "did not compare the proposed route" in review.evidence_problem(ticket=ticket, proposal=proposal, run=without)
    elsewhere = compared(ticket, proposal, cases)
    ComparisonRun.objects.filter(pk=elsewhere.pk).update(ticket_ref="FOS-9")
    elsewhere.refresh_from_db()
    assert "does not belong to FOS-142" in review.evidence_problem(ticket=ticket, proposal=proposal, run=elsewhere)
    evidence = compared(ticket, proposal, cases)
    review.edit_proposal(proposal=proposal, backend=backend("frontier"), position=0, displaced="shift", author="olivia-operator")
    proposal.refresh_from_db()
    assert "ran candidate for this route, which now goes to frontier" in review.evidence_problem(
        ticket=ticket, proposal=proposal, run=evidence
    )
    with pytest.raises(review.ReviewError, match="which now goes to frontier"):
        review.approve(proposal=proposal, reviewer=reviewer, comment="ok", run=evidence)
    assert other.route.status == "proposed"


def test_it_decides_once(ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any) -> None:
    proposal = propose(ticket, operator)
    review.reject(proposal=proposal, reviewer=reviewer, comment="not needed")
    assert Route.objects.get(pk=proposal.route_id).status == "rejected"
    with pytest.raises(review.ReviewError, match="the route is rejected"):
        review.approve(proposal=proposal, reviewer=reviewer, comment="changed my mind", run=compared(ticket, proposal, cases))
    assert run("classify-fast", "refund please").backend == "spark"


def test_it_sends_an_approved_route_back_to_review_when_its_backend_or_position_changes(
    ticket: Ticket, criteria: Any, cases: Any, operator: Any, reviewer: Any
) -> None:
    proposal = propose(ticket, operator)
    review.approve(proposal=proposal, reviewer=reviewer, comment="good", run=compared(ticket, proposal, cases))
    assert run("classify-fast", "refund please").backend == "candidate"
    route = Route.objects.get(pk=proposal.route_id)
    assert route.needs_review_after(backend_id=route.backend_id, position=1)
    assert not route.needs_review_after(backend_id=route.backend_id, position=0)

    outcome = review.edit_proposal(proposal=proposal, backend=backend("candidate"), position=1, displaced="shift", author="olivia-operator")

    assert outcome.sent_back
    route.refresh_from_db()
    assert (route.status, route.approved_by, route.approved_at) == ("proposed", None, None)
    assert active(ticket.capability) == ["spark", "triage"]
    latest = PolicyRevision.objects.order_by("-number").first()
    assert "sent back to review (changed after approval)" in latest.summary and latest.author == "olivia-operator"
    assert run("classify-fast", "refund please").backend == "spark"  # the planner no longer uses it


def test_it_edits_an_unapproved_proposal_without_a_revision(ticket: Ticket, operator: Any) -> None:
    proposal = propose(ticket, operator)
    revisions = PolicyRevision.objects.count()
    outcome = review.edit_proposal(proposal=proposal, backend=backend("candidate"), position=1, displaced="retire", author="olivia-operator")
    assert not outcome.sent_back
    proposal.refresh_from_db()
    assert (proposal.route.position, proposal.displaced, proposal.route.status) == (1, "retire", "proposed")
    assert PolicyRevision.objects.count() == revisions
