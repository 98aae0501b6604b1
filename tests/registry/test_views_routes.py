"""Reordering, enabling and disabling a capability's routes on its page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from registry.models import Backend, Capability, PolicyRevision, Route

pytestmark = pytest.mark.django_db

DETAIL = "/console/capabilities/classify-fast/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def route(capability: Capability, backend: str) -> Route:
    return capability.routes.get(backend__slug=backend, status__in=["active", "proposed", "approved"])


def move_url(r: Route) -> str:
    return f"/console/capabilities/{r.capability.slug}/routes/{r.pk}/move/"


def toggle_url(r: Route) -> str:
    return f"/console/capabilities/{r.capability.slug}/routes/{r.pk}/toggle/"


def order(capability: Capability) -> list[tuple[str, int]]:
    active = capability.routes.filter(status="active").order_by("position", "id")
    return [(r.backend.slug, r.position) for r in active]


def latest() -> PolicyRevision:
    return PolicyRevision.objects.order_by("-number").first()


def approve(r: Route, by: Any) -> Route:
    r.approved_at, r.approved_by = timezone.now(), by
    r.save(update_fields=["approved_at", "approved_by"])
    return r


# Access


def test_it_sends_anonymous_changes_to_sign_in(client: Client, classify: Capability) -> None:
    frontier = route(classify, "frontier")
    for url in (move_url(frontier), toggle_url(frontier)):
        response = client.post(url, {"direction": "up"})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert order(classify) == [("spark", 0), ("frontier", 1), ("triage", 2)]


@pytest.mark.parametrize("role", ["outsider", "reviewer"])
def test_it_forbids_lookers_to_move_or_toggle(
    request: pytest.FixtureRequest, client_for: Any, classify: Capability, role: str
) -> None:
    client = client_for(request.getfixturevalue(role))
    frontier = route(classify, "frontier")
    revisions = PolicyRevision.objects.count()
    assert client.post(move_url(frontier), {"direction": "up"}).status_code == 403
    assert client.post(toggle_url(frontier), **HTMX).status_code == 403
    assert order(classify) == [("spark", 0), ("frontier", 1), ("triage", 2)]
    assert PolicyRevision.objects.count() == revisions


def test_it_refuses_get_on_the_actions(client_for: Any, operator: Any, classify: Capability) -> None:
    frontier = route(classify, "frontier")
    client = client_for(operator)
    assert client.get(move_url(frontier)).status_code == 405
    assert client.get(toggle_url(frontier)).status_code == 405


def test_it_answers_404_for_a_route_of_another_capability(client_for: Any, operator: Any, classify: Capability) -> None:
    other = Capability.objects.get(slug="redact-local").routes.first()
    response = client_for(operator).post(f"/console/capabilities/classify-fast/routes/{other.pk}/move/", {"direction": "up"})
    assert response.status_code == 404


def test_it_offers_route_controls_to_operators_only(client_for: Any, operator: Any, reviewer: Any, classify: Capability) -> None:
    frontier = route(classify, "frontier")
    assert move_url(frontier) in client_for(operator).get(DETAIL).content.decode()
    content = client_for(reviewer).get(DETAIL).content.decode()
    assert "frontier" in content and "frontier-large" in content
    assert "Move up" not in content and "Disable" not in content


# Moving


def test_it_moves_a_route_up_with_one_revision(client_for: Any, operator: Any, classify: Capability) -> None:
    before = PolicyRevision.objects.count()
    response = client_for(operator).post(move_url(route(classify, "frontier")), {"direction": "up"})
    assert response.status_code == 302 and response["Location"] == DETAIL + "#routes"
    assert order(classify) == [("frontier", 0), ("spark", 1), ("triage", 2)]
    assert PolicyRevision.objects.count() == before + 1
    revision = latest()
    assert revision.author == operator.get_username()
    assert revision.summary == "classify-fast: moved frontier up; routes [spark, frontier, triage] -> [frontier, spark, triage]"
    assert revision.snapshot["capabilities"]["classify-fast"]["routes"] == ["frontier", "spark", "triage"]


def test_it_answers_an_htmx_move_with_the_routes_fragment_and_a_policy_event(
    client_for: Any, operator: Any, classify: Capability
) -> None:
    response = client_for(operator).post(move_url(route(classify, "spark")), {"direction": "down"}, **HTMX)
    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" not in content and content.lstrip().startswith('<section id="routes"')
    table = content[content.index('id="active-routes"') :]
    assert table.index("frontier") < table.index("spark") < table.index("triage")
    assert response["HX-Trigger"] == '{"policyChanged": {}}'


def test_it_refuses_to_move_past_the_ends(client_for: Any, operator: Any, classify: Capability) -> None:
    before = PolicyRevision.objects.count()
    client = client_for(operator)
    response = client.post(move_url(route(classify, "spark")), {"direction": "up"}, **HTMX)
    assert response.status_code == 200 and "spark is already first." in response.content.decode()
    assert "HX-Trigger" not in response
    response = client.post(move_url(route(classify, "triage")), {"direction": "down"})
    assert response.status_code == 400 and "triage is already last." in response.content.decode()
    response = client.post(move_url(route(classify, "triage")), {"direction": "sideways"})
    assert response.status_code == 400
    assert order(classify) == [("spark", 0), ("frontier", 1), ("triage", 2)]
    assert PolicyRevision.objects.count() == before


def test_it_rewrites_positions_without_gaps(client_for: Any, operator: Any, classify: Capability) -> None:
    Route.objects.filter(capability=classify, backend__slug="triage").update(position=7)
    Route.objects.filter(capability=classify, backend__slug="frontier").update(position=4)
    client_for(operator).post(move_url(route(classify, "triage")), {"direction": "up"})
    assert order(classify) == [("spark", 0), ("triage", 1), ("frontier", 2)]


def test_it_warns_before_a_move_that_sends_an_approved_route_back_to_review(
    client_for: Any, operator: Any, reviewer: Any, classify: Capability
) -> None:
    approve(route(classify, "frontier"), reviewer)
    content = client_for(operator).get(DETAIL).content.decode()
    assert "Move up (needs re-review)" in content
    assert 'name="confirm" required> sends frontier back to review' in content
    # frontier up and down, and the two moves that swap a neighbour with it: spark down, triage up.
    assert content.count("(needs re-review)</button>") == 4


def test_it_refuses_an_unconfirmed_move_that_costs_an_approval(
    client_for: Any, operator: Any, reviewer: Any, classify: Capability
) -> None:
    approve(route(classify, "frontier"), reviewer)
    before = PolicyRevision.objects.count()
    response = client_for(operator).post(move_url(route(classify, "spark")), {"direction": "down"}, **HTMX)
    assert "Moving spark down sends frontier back to review; tick the box to confirm." in response.content.decode()
    assert order(classify) == [("spark", 0), ("frontier", 1), ("triage", 2)]
    assert PolicyRevision.objects.count() == before


def test_it_sends_a_moved_approved_route_back_to_review(
    client_for: Any, operator: Any, reviewer: Any, classify: Capability
) -> None:
    approve(route(classify, "frontier"), reviewer)
    response = client_for(operator).post(move_url(route(classify, "frontier")), {"direction": "up", "confirm": "on"}, **HTMX)
    assert response.status_code == 200
    frontier = route(classify, "frontier")
    assert (frontier.status, frontier.approved_at, frontier.approved_by, frontier.position) == ("proposed", None, None, 0)
    assert order(classify) == [("spark", 1), ("triage", 2)]
    assert latest().summary == (
        "classify-fast: moved frontier up; routes [spark, frontier, triage] -> [frontier, spark, triage]; "
        "frontier sent back to review (moved after approval)"
    )
    content = response.content.decode()
    other = content[content.index('id="other-routes"') :]
    assert "frontier" in other and "awaiting review" in other


def test_it_keeps_an_approval_when_only_the_gaps_close(
    client_for: Any, operator: Any, reviewer: Any, classify: Capability
) -> None:
    Route.objects.filter(capability=classify, backend__slug="frontier").update(position=3)
    Route.objects.filter(capability=classify, backend__slug="triage").update(position=5)
    approve(route(classify, "spark"), reviewer)
    Backend.objects.create(slug="spare", adapter="tool", locality="local", tool="template", config={"template": "x"})
    Route.objects.create(capability=classify, backend=Backend.objects.get(slug="spare"), position=9, status="active")
    client_for(operator).post(move_url(route(classify, "spare")), {"direction": "up"})
    assert order(classify) == [("spark", 0), ("frontier", 1), ("spare", 2), ("triage", 3)]
    assert route(classify, "spark").approved_at is not None
    assert "sent back to review" not in latest().summary


# Enabling and disabling


def test_it_disables_an_active_route(client_for: Any, operator: Any, classify: Capability) -> None:
    before = PolicyRevision.objects.count()
    response = client_for(operator).post(toggle_url(route(classify, "frontier")), **HTMX)
    assert response["HX-Trigger"] == '{"policyChanged": {}}'
    assert order(classify) == [("spark", 0), ("triage", 2)]
    assert PolicyRevision.objects.count() == before + 1
    assert latest().summary == "classify-fast: disabled route frontier (was position 1)"
    assert latest().snapshot["capabilities"]["classify-fast"]["routes"] == ["spark", "triage"]
    content = response.content.decode()
    assert "Enable: frontier" in content[content.index('id="other-routes"') :]


def test_it_enables_a_retired_route_at_the_end(client_for: Any, operator: Any, classify: Capability) -> None:
    client = client_for(operator)
    frontier = route(classify, "frontier")
    client.post(toggle_url(frontier))
    response = client.post(toggle_url(frontier))
    assert response.status_code == 302
    assert order(classify) == [("spark", 0), ("triage", 2), ("frontier", 3)]
    assert latest().summary == "classify-fast: enabled route frontier at position 3"


def test_it_refuses_to_enable_a_hosted_route_for_a_local_only_capability(
    client_for: Any, operator: Any, policy: Any
) -> None:
    private = Capability.objects.get(slug="redact-local")
    hosted = Route.objects.create(
        capability=private, backend=Backend.objects.get(slug="frontier"), position=5, status="retired"
    )
    before = PolicyRevision.objects.count()
    response = client_for(operator).post(toggle_url(hosted), **HTMX)
    assert response.status_code == 200
    assert "Cannot enable frontier: frontier is hosted and redact-local is local_only" in response.content.decode()
    hosted.refresh_from_db()
    assert hosted.status == "retired"
    assert PolicyRevision.objects.count() == before


def test_it_leaves_proposed_routes_to_their_ticket(client_for: Any, operator: Any, classify: Capability) -> None:
    proposed = Route.objects.create(
        capability=classify, backend=Backend.objects.get(slug="frontier"), position=3, status="proposed", ticket_ref="T-7"
    )
    content = client_for(operator).get(DETAIL).content.decode()
    other = content[content.index('id="other-routes"') :]
    assert "awaiting review" in other and "T-7" in other and toggle_url(proposed) not in other
    response = client_for(operator).post(toggle_url(proposed))
    assert response.status_code == 400
    assert "frontier is proposed: its review happens in its ticket." in response.content.decode()
    proposed.refresh_from_db()
    assert proposed.status == "proposed"


def test_it_asks_to_confirm_enabling_an_approved_route_elsewhere(
    client_for: Any, operator: Any, reviewer: Any, classify: Capability
) -> None:
    client = client_for(operator)
    spark = approve(route(classify, "spark"), reviewer)
    client.post(toggle_url(spark))  # retired at position 0; enabling puts it last
    content = client.get(DETAIL).content.decode()
    assert "Enable (needs re-review)" in content
    response = client.post(toggle_url(spark), **HTMX)
    assert "Enabling spark at position 3 sends it back to review; tick the box to confirm." in response.content.decode()
    client.post(toggle_url(spark), {"confirm": "on"})
    spark.refresh_from_db()
    assert (spark.status, spark.position, spark.approved_at) == ("proposed", 3, None)
    assert latest().summary.endswith("sent back to review (moved after approval)")
