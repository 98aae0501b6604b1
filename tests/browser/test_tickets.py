"""Propose -> compare -> approve -> the new route answers live calls, in the browser.

The comparison runs eagerly in the web process (the `eager_celery` fixture), as on the
embedded default. Under CI with Redis the settings would queue it for a worker this test does
not start; a real worker is exercised in tests/routing/test_comparisons.py instead.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from registry.models import Route
from routing.callers import create_caller
from routing.models import ComparisonRun
from tests.routing.conftest import sim, simulator  # noqa: F401  (fixtures: the provider simulator)
from tests.tickets.conftest import cases, criteria, policy, ticket  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def call_api(base: str, token: str, text: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/api/v1/route/classify-fast",
        data=json.dumps({"input": text}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_it_takes_a_route_from_proposal_through_comparison_and_approval_to_live_traffic(
    page: Any,
    sign_in: Any,
    live_server: Any,
    operator: Any,
    reviewer: Any,
    ticket: Any,  # noqa: F811
    cases: Any,  # noqa: F811
    criteria: Any,  # noqa: F811
    eager_celery: None,  # noqa: F811
    sim: Any,  # noqa: F811
) -> None:
    _, token = create_caller(name="billing-app")
    assert call_api(live_server.url, token, "the invoice is wrong")["outcome"] == "primary"
    ticket_url = f"{live_server.url}/console/tickets/FOS-142/"

    # An operator proposes the candidate as the new primary, then compares.
    sign_in(page, operator)
    page.goto(ticket_url)
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    page.get_by_text("Propose a route").click()
    page.select_option("#id_backend", "candidate")
    page.fill("#id_position", "0")
    page.get_by_role("button", name="Propose route").click()
    page.get_by_role("status").get_by_text("Proposed candidate at position 0: awaiting review.").wait_for()
    # The runs region heard ticketChanged and now offers the proposed route for comparison.
    candidate = page.locator("#compare-form").get_by_label("candidate (proposed, for position 0)")
    candidate.wait_for(state="attached")
    page.get_by_text("Start a comparison run").click()
    assert candidate.is_checked()
    page.get_by_role("button", name="Start comparison").click()
    page.get_by_role("status").get_by_text("started").wait_for()
    run = ComparisonRun.objects.get()
    page.locator(f"#run-progress-{run.pk}[data-status=done]").get_by_text("9 / 9 cells").wait_for()
    assert page.evaluate("window.sameDocument") is True

    page.get_by_role("link", name=f"run {run.pk}").click()
    page.locator("#side-by-side").wait_for()
    assert page.locator("#side-by-side tbody tr").count() == 3
    overall = page.locator("#criteria-verdicts tr.overall td[data-backend=candidate]")
    assert overall.inner_text() == "meets all 2 criteria"
    assert page.locator("svg.chart").count() == 4
    page.get_by_role("button", name="Sign out").click()

    # A reviewer approves it, citing the run.
    sign_in(page, reviewer)
    page.goto(ticket_url)
    proposal = page.locator("article.proposal[data-backend=candidate]")
    assert proposal.locator("select[name=comparison_run]").input_value() == str(run.pk)
    proposal.get_by_text("The cited run meets all 2 criteria.").wait_for()
    proposal.locator("textarea[name=comment]").fill("Meets every criterion on the FOS-142 cases.")
    proposal.get_by_role("button", name="Record decision").click()
    page.get_by_role("status").get_by_text("Approved: candidate now serves classify-fast.").wait_for()
    page.locator("#reviews").get_by_text("Meets every criterion on the FOS-142 cases.").wait_for()
    page.locator("#ticket-status").get_by_text("accepted").wait_for()

    route = Route.objects.get(backend__slug="candidate")
    assert (route.status, route.position, route.approved_by_id) == ("active", 0, reviewer.pk)
    calls = sim.calls("tag=candidate,answer=billing")
    answer = call_api(live_server.url, token, "the invoice is wrong")
    assert (answer["output"], answer["outcome"]) == ("billing", "primary")
    assert sim.calls("tag=candidate,answer=billing") == calls + 1
