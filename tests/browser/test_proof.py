"""An operator makes and publishes a proof; a signed-out visitor reads it."""

from __future__ import annotations

from typing import Any

import pytest

from routing import comparisons
from tests.routing.conftest import sim, simulator  # noqa: F401  (fixtures: the provider simulator)
from tests.tickets.conftest import cases, criteria, policy, ticket  # noqa: F401  (fixtures)
from tickets.models import ProofArtifact

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_publishes_a_proof_that_a_signed_out_visitor_can_read(
    browser: Any, page: Any, sign_in: Any, live_server: Any, operator: Any, ticket: Any, cases: Any, criteria: Any  # noqa: F811
) -> None:
    routes = list(ticket.capability.routes.filter(status="active").order_by("position"))
    run = comparisons.create_run(capability=ticket.capability, routes=routes, cases=cases, ticket_ref=ticket.key)
    comparisons.execute_run(run_id=run.pk)

    sign_in(page, operator)
    page.goto(f"{live_server.url}/console/tickets/{ticket.key}/")
    page.get_by_text("Make a proof").click()
    page.get_by_role("button", name="Make proof").click()
    page.locator("#proof-controls").get_by_text("not published").wait_for()
    page.get_by_role("button", name="Publish").click()
    page.get_by_role("status").get_by_text("Published at").wait_for()
    proof = ProofArtifact.objects.get()
    assert proof.is_published

    visitor = browser.new_context()
    try:
        public = visitor.new_page()
        response = public.goto(f"{live_server.url}/proof/{proof.slug}/")
        assert response is not None and response.status == 200
        public.get_by_role("heading", name="Proof for FOS-142: Cheaper classification").wait_for()
        criteria_table = public.locator("#proof-criteria-table")
        assert "verification pass rate at least 1" in criteria_table.inner_text()
        assert public.locator("a[href*='/console/']").count() == 0 and public.locator("form").count() == 0
    finally:
        visitor.close()
