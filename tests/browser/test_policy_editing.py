"""An operator edits a capability's policy in the browser; a reviewer cannot."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import NoReverseMatch, reverse

from registry.models import Capability, PolicyRevision
from tests.routing.conftest import sim, simulator  # noqa: F401  (fixtures: the provider simulator)
from tests.routing.test_executor import TRIAGE, classify, http_backend

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/console/capabilities/classify-fast/"


@pytest.fixture
def policy(install_policy: Any, sim: Any) -> PolicyRevision:  # noqa: F811
    return install_policy(
        backends={
            "spark": http_backend(sim, "ollama", "answer=billing"),
            "frontier": http_backend(sim, "openai", "answer=urgent", locality="hosted"),
            "triage": TRIAGE,
        },
        capabilities={"classify-fast": classify(["spark", "frontier", "triage"], latency_budget_ms=2000)},
    )


def active_order(page: Any) -> list[str]:
    return page.locator("#active-routes tbody tr").evaluate_all("rows => rows.map(r => r.dataset.backend)")


def test_it_lets_an_operator_edit_reorder_and_dry_run_without_reloading(
    page: Any, sign_in: Any, live_server: Any, operator: Any, policy: Any
) -> None:
    sign_in(page, operator)
    page.goto(live_server.url + PAGE)
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

    page.fill("#id_latency_budget_ms", "0")
    page.get_by_role("button", name="Save contract").click()
    page.locator("#field-id_latency_budget_ms .errorlist").get_by_text("greater than or equal to 1").wait_for()
    page.fill("#id_latency_budget_ms", "1500")
    page.get_by_role("button", name="Save contract").click()
    page.get_by_role("status").get_by_text("latency_budget_ms 2000 -> 1500").wait_for()
    assert Capability.objects.get(slug="classify-fast").latency_budget_ms == 1500

    page.get_by_role("button", name="Move up: frontier").click()
    page.get_by_role("status").get_by_text("moved frontier up").wait_for()
    assert active_order(page) == ["frontier", "spark", "triage"]
    # The history region listens for policyChanged and shows the move without a reload.
    page.locator("#recent-revisions").get_by_text("moved frontier up").wait_for()

    try:
        reverse("routing:dry-run", kwargs={"slug": "classify-fast"})
    except NoReverseMatch:
        pass  # the dry-run endpoint is another piece of work; its form is not offered until it exists
    else:
        page.fill("#dry-run-input", "the invoice is wrong")
        page.get_by_role("button", name="Show the plan").click()
        result = page.locator("#dry-run-result")
        result.get_by_text("frontier").first.wait_for()
        assert "spark" in result.inner_text()
    assert page.evaluate("window.sameDocument") is True


def test_it_offers_a_reviewer_no_edit_controls_and_refuses_a_forged_post(
    page: Any, sign_in: Any, live_server: Any, reviewer: Any, policy: Any
) -> None:
    sign_in(page, reviewer)
    page.goto(live_server.url + PAGE)
    page.get_by_text("2000 ms").wait_for()
    for name in ("Save contract", "Move up: frontier", "Disable: spark", "Route one call"):
        assert page.get_by_role("button", name=name).count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        live_server.url + PAGE + "contract/",
        form={"privacy": "hosted_allowed", "latency_budget_ms": "1", "verify": "non_empty"},
        headers={"X-CSRFToken": csrf, "Referer": live_server.url + PAGE},
    )
    assert response.status == 403
    assert Capability.objects.get(slug="classify-fast").latency_budget_ms == 2000


def test_a_region_just_swapped_in_hears_the_next_change_event(
    page: Any, sign_in: Any, live_server: Any, reviewer: Any, policy: Any
) -> None:
    # A change event that arrives in the next task after a region was swapped in must reach the
    # new region; with a settle delay it would fall between the swap and htmx processing it.
    sign_in(page, reviewer)
    page.goto(live_server.url + PAGE)
    page.evaluate(
        """() => {
            window.historyRequests = 0;
            document.body.addEventListener('htmx:beforeRequest', e => {
                if (e.detail.elt.id === 'recent-revisions') window.historyRequests += 1;
            });
            document.body.addEventListener('htmx:afterSwap', e => {
                if (e.detail.target.id === 'recent-revisions' && window.historyRequests === 1) {
                    setTimeout(() => htmx.trigger(document.body, 'policyChanged'), 0);
                }
            });
            htmx.trigger(document.body, 'policyChanged');
        }"""
    )
    page.wait_for_function("window.historyRequests >= 2", timeout=5000)
