from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from registry.models import Backend, Capability, Route
from routing import comparisons
from routing.models import ComparisonRun, EvaluationCase
from tests.routing.conftest import sim, simulator  # noqa: F401  (fixtures: the provider simulator)
from tests.routing.test_executor import TRIAGE, classify, http_backend
from tickets import review
from tickets.models import AcceptanceCriterion, RouteProposal, Ticket

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def policy(install_policy: Any, sim: Any) -> Capability:  # noqa: F811
    """classify-fast served by spark (local ollama, answers billing) then triage (a keyword
    tool); candidate (local openai, echoes) and frontier (hosted, answers urgent) wait in the
    registry for proposals."""
    install_policy(
        backends={
            "spark": http_backend(sim, "ollama", "answer=billing"),
            "triage": TRIAGE,
            "candidate": http_backend(sim, "openai", "tag=candidate,answer=billing", cost_in_per_mtok="1", cost_out_per_mtok="2"),
            "frontier": http_backend(sim, "openai", "tag=frontier,answer=urgent", locality="hosted"),
        },
        capabilities={"classify-fast": classify(["spark", "triage"])},
    )
    return Capability.objects.get(slug="classify-fast")


@pytest.fixture
def ticket(policy: Capability, operator: Any) -> Ticket:
    return Ticket.objects.create(
        key="FOS-142",
        title="Cheaper classification",
        capability=policy,
        description="Try the candidate model as primary.",
        external_url="https://tracker.example.com/FOS-142",
        commit_ref="0123abcd",
        created_by=operator,
    )


@pytest.fixture
def cases(policy: Capability) -> list[EvaluationCase]:
    return [
        EvaluationCase.objects.create(capability=policy, name="invoice", input="the invoice is wrong", expected="billing"),
        EvaluationCase.objects.create(capability=policy, name="refund", input="refund please", expected="billing"),
        EvaluationCase.objects.create(capability=policy, name="secret", input="my invoice, account 42", private=True),
    ]


@pytest.fixture
def criteria(ticket: Ticket) -> list[AcceptanceCriterion]:
    return [
        AcceptanceCriterion.objects.create(
            ticket=ticket, metric="verification_pass_rate", comparison="at_least", threshold=Decimal("1")
        ),
        AcceptanceCriterion.objects.create(ticket=ticket, metric="latency_p95_ms", comparison="at_most", threshold=Decimal("2000")),
    ]


def backend(slug: str) -> Backend:
    return Backend.objects.get(slug=slug)


def propose(
    ticket: Ticket, by: Any, slug: str = "candidate", position: int = 0, displaced: str = "shift"
) -> RouteProposal:
    return review.propose_route(
        ticket=ticket, backend=backend(slug), position=position, displaced=displaced, note="", proposed_by=by
    )


def finished_run(ticket: Ticket, routes: list[Route], cases: list[EvaluationCase]) -> ComparisonRun:
    """A comparison of `routes` on `cases`, run to its end in this process."""
    run = comparisons.create_run(capability=ticket.capability, routes=routes, cases=cases, ticket_ref=ticket.key)
    comparisons.execute_run(run_id=run.pk)
    run.refresh_from_db()
    return run


def active(capability: Capability) -> list[str]:
    routes = capability.routes.filter(status=Route.Status.ACTIVE).order_by("position", "id")
    return [r.backend.slug for r in routes]


__all__ = ["HTMX", "TRIAGE", "active", "backend", "classify", "http_backend"]
