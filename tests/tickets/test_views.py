"""The ticket pages and the comparison page: access by role, methods, fragments, forms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from registry.models import Capability, PolicyRevision, Route
from routing import comparisons
from routing.models import ComparisonRun, EvaluationCase
from tests.tickets.conftest import HTMX, active, backend, finished_run, propose
from tickets import review
from tickets.models import AcceptanceCriterion, Review, RouteProposal, Ticket

pytestmark = pytest.mark.django_db

LIST = "/console/tickets/"
CREATE = "/console/tickets/new/"
DETAIL = "/console/tickets/FOS-142/"


def url(action: str) -> str:
    return f"{DETAIL}{action}/"


def fragment_of(response: Any) -> str:
    content = response.content.decode()
    assert "<html" not in content, "expected a fragment, got a whole page"
    return content


@pytest.fixture
def proposal(ticket: Ticket, operator: Any) -> RouteProposal:
    return propose(ticket, operator)


@pytest.fixture
def evidence(ticket: Ticket, proposal: RouteProposal, cases: list[EvaluationCase], criteria: Any) -> ComparisonRun:
    routes = [*ticket.capability.routes.filter(status="active").order_by("position"), proposal.route]
    return finished_run(ticket, routes, cases)


# Access and methods


def test_it_sends_anonymous_visitors_to_sign_in(client: Client, ticket: Ticket, evidence: ComparisonRun) -> None:
    for page in (LIST, DETAIL, f"/console/comparisons/{evidence.pk}/"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    before = AcceptanceCriterion.objects.count()
    response = client.post(url("criteria"), {"metric": "error_rate", "comparison": "at_most", "threshold": "0.1"})
    assert response.status_code == 302 and AcceptanceCriterion.objects.count() == before


def operator_posts(ticket: Ticket, proposal: RouteProposal, run: ComparisonRun) -> list[str]:
    return [
        CREATE,
        url("criteria"),
        url("cases"),
        url("proposals"),
        url(f"proposals/{proposal.pk}/edit"),
        url("comparisons"),
        f"/console/comparisons/{run.pk}/cancel/",
        f"/console/comparisons/{run.pk}/resume/",
    ]


@pytest.mark.parametrize("role", ["outsider", "reviewer"])
def test_it_forbids_operator_actions_to_other_roles(
    request: pytest.FixtureRequest, client_for: Any, role: str, ticket: Ticket, proposal: RouteProposal, evidence: ComparisonRun
) -> None:
    client = client_for(request.getfixturevalue(role))
    for action in operator_posts(ticket, proposal, evidence):
        assert client.post(action, {}).status_code == 403, action
        assert client.post(action, {}, **HTMX).status_code == 403, action
    assert Ticket.objects.count() == 1 and RouteProposal.objects.count() == 1 and ComparisonRun.objects.count() == 1


@pytest.mark.parametrize("role", ["outsider", "operator"])
def test_it_forbids_decisions_to_non_reviewers(
    request: pytest.FixtureRequest, client_for: Any, role: str, proposal: RouteProposal, evidence: ComparisonRun
) -> None:
    response = client_for(request.getfixturevalue(role)).post(
        url(f"proposals/{proposal.pk}/review"), {"decision": "approve", "comparison_run": evidence.pk, "comment": "ok"}
    )
    assert response.status_code == 403
    assert Route.objects.get(pk=proposal.route_id).status == "proposed"


def test_it_refuses_the_wrong_method_everywhere(client_for: Any, operator: Any, proposal: RouteProposal, evidence: ComparisonRun) -> None:
    client = client_for(operator)
    for page in (LIST, DETAIL, f"/console/comparisons/{evidence.pk}/", f"/console/comparisons/{evidence.pk}/progress/"):
        assert client.post(page).status_code == 405, page
    for action in [*operator_posts(proposal.ticket, proposal, evidence), url(f"proposals/{proposal.pk}/review")]:
        assert client.get(action).status_code == 405, action


def test_it_answers_404_for_unknown_tickets_proposals_and_runs(client_for: Any, operator: Any, reviewer: Any, proposal: RouteProposal) -> None:
    client = client_for(operator)
    assert client.get("/console/tickets/FOS-999/").status_code == 404
    assert client.post("/console/tickets/FOS-999/criteria/", {}).status_code == 404
    assert client.post(url("proposals/9999/edit"), {}).status_code == 404
    assert client.get("/console/comparisons/9999/").status_code == 404
    assert client_for(reviewer).post(url("proposals/9999/review"), {}).status_code == 404


# The list


def test_it_lists_tickets_with_their_proposals_and_offers_creation_to_operators(
    client_for: Any, operator: Any, outsider: Any, proposal: RouteProposal
) -> None:
    content = client_for(outsider).get(LIST).content.decode()
    assert "FOS-142" in content and "Cheaper classification" in content and "classify-fast" in content
    assert CREATE not in content
    content = client_for(operator).get(LIST).content.decode()
    assert f'action="{CREATE}"' in content
    fragment = fragment_of(client_for(outsider).get(LIST, **HTMX))
    assert 'id="ticket-table"' in fragment and '<td class="num">1</td>' in fragment


def test_it_creates_a_ticket(client_for: Any, operator: Any, policy: Capability) -> None:
    data = {"key": "FOS-7", "title": "Faster triage", "capability": "classify-fast", "external_url": "https://t.example/7", "commit_ref": "https://git.example/c/abc"}
    response = client_for(operator).post(CREATE, data)
    assert response.status_code == 302 and response["Location"] == "/console/tickets/FOS-7/"
    ticket = Ticket.objects.get(key="FOS-7")
    assert (ticket.status, ticket.created_by, ticket.capability) == ("open", operator, policy)
    response = client_for(operator).post(CREATE, {**data, "key": "FOS-8"}, **HTMX)
    assert response.status_code == 204 and response["HX-Redirect"] == "/console/tickets/FOS-8/"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("key", "fos-7", "uppercase letters, a dash and digits"),
        ("key", "FOS 7", "uppercase letters, a dash and digits"),
        ("key", "FOS-142", "already exists"),
        ("external_url", "ftp://files.example/7", "Enter a valid URL"),
        ("external_url", "javascript:alert(1)", "Enter a valid URL"),
        ("commit_ref", "not a sha", "a commit SHA"),
        ("capability", "nope", "Select a valid choice"),
        ("title", "", "This field is required"),
    ],
)
def test_it_shows_ticket_form_errors(client_for: Any, operator: Any, ticket: Ticket, field: str, value: str, error: str) -> None:
    data = {"key": "FOS-7", "title": "t", "capability": "classify-fast", field: value}
    response = client_for(operator).post(CREATE, data)
    assert response.status_code == 400 and error in response.content.decode()
    response = client_for(operator).post(CREATE, data, **HTMX)
    assert response.status_code == 200 and error in fragment_of(response)
    assert 'id="new-ticket"' in response.content.decode()
    assert Ticket.objects.count() == 1


# The detail page


def test_it_shows_a_ticket_to_lookers_without_actions(client_for: Any, outsider: Any, proposal: RouteProposal, evidence: ComparisonRun) -> None:
    response = client_for(outsider).get(DETAIL)
    content = response.content.decode()
    assert response.status_code == 200
    assert "Cheaper classification" in content and "Try the candidate model as primary." in content
    assert 'href="https://tracker.example.com/FOS-142"' in content
    assert "<code>0123abcd</code>" in content
    assert "verification pass rate" in content and "at least" in content
    assert "the invoice is wrong" in content and "private" in content
    assert f'id="proposal-{proposal.pk}"' in content and "awaiting" not in content
    assert f"/console/comparisons/{evidence.pk}/" in content
    for action in ("/criteria/", "/cases/", "/proposals/\"", "/edit/", "/review/", "/comparisons/\"", "/cancel/", "/resume/"):
        assert action not in content, action


def test_it_offers_each_role_its_own_actions(client_for: Any, operator: Any, reviewer: Any, proposal: RouteProposal, evidence: ComparisonRun) -> None:
    mine = client_for(operator).get(DETAIL).content.decode()
    for action in ("criteria", "cases", "proposals", f"proposals/{proposal.pk}/edit", "comparisons"):
        assert f'action="{url(action)}"' in mine
    assert "/review/" not in mine
    theirs = client_for(reviewer).get(DETAIL).content.decode()
    assert f'action="{url(f"proposals/{proposal.pk}/review")}"' in theirs
    assert f'action="{url("criteria")}"' not in theirs
    assert "If approved, the active routes become: <code>candidate</code> → <code>spark</code> → <code>triage</code>" in theirs
    assert "The cited run meets all 2 criteria." in theirs


def test_it_does_not_offer_a_reviewer_their_own_proposal(client_for: Any, reviewer: Any, ticket: Ticket, evidence: ComparisonRun) -> None:
    own = propose(ticket, reviewer, slug="frontier")
    content = client_for(reviewer).get(DETAIL).content.decode()
    assert url(f"proposals/{own.pk}/review") not in content
    assert "You proposed this route: another reviewer decides on it." in content
    response = client_for(reviewer).post(url(f"proposals/{own.pk}/review"), {"decision": "reject", "comment": "mine"})
    assert response.status_code == 403
    assert "nobody approves or rejects a route they proposed" in response.content.decode()


def test_it_escapes_ticket_text_and_links_only_web_urls(client_for: Any, outsider: Any, ticket: Ticket) -> None:
    Ticket.objects.filter(pk=ticket.pk).update(
        title="<script>alert(1)</script>", description="<img src=x onerror=alert(2)>", external_url="javascript:alert(3)"
    )
    content = client_for(outsider).get(DETAIL).content.decode()
    assert "<script>alert(1)" not in content and "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<img src=x" not in content
    assert 'href="javascript:' not in content and "javascript:alert(3)" in content


@pytest.mark.parametrize("target", ["ticket-head", "criteria", "cases", "proposals", "runs", "reviews"])
def test_it_answers_htmx_with_the_region_asked_for(client_for: Any, outsider: Any, proposal: RouteProposal, target: str) -> None:
    response = client_for(outsider).get(DETAIL, HTTP_HX_TARGET=target, **HTMX)
    content = fragment_of(response)
    assert content.lstrip().startswith(f'<section id="{target}"')
    assert "HX-Request" in response["Vary"]


# Criteria, cases, proposals


def test_it_adds_a_criterion(client_for: Any, operator: Any, ticket: Ticket) -> None:
    response = client_for(operator).post(url("criteria"), {"metric": "error_rate", "comparison": "at_most", "threshold": "0.05"}, **HTMX)
    content = fragment_of(response)
    assert 'id="criteria"' in content and "Criterion added: error rate at most 0.05" in content
    assert json.loads(response["HX-Trigger"]) == {"ticketChanged": {"source": "criteria"}}
    response = client_for(operator).post(url("criteria"), {"metric": "latency_p95_ms", "comparison": "at_most", "threshold": "900"})
    assert response.status_code == 302 and response["Location"] == DETAIL + "#criteria"
    assert list(ticket.criteria.values_list("metric", flat=True)) == ["error_rate", "latency_p95_ms"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"metric": "error_rate", "comparison": "at_most", "threshold": "5"}, "a rate is between 0 and 1"),
        ({"metric": "latency_p95_ms", "comparison": "at_most", "threshold": "-1"}, "must not be negative"),
        ({"metric": "speed", "comparison": "at_most", "threshold": "1"}, "Select a valid choice"),
        ({"metric": "error_rate", "comparison": "about", "threshold": "1"}, "Select a valid choice"),
        ({"metric": "error_rate", "comparison": "at_most", "threshold": "lots"}, "Enter a number"),
    ],
)
def test_it_shows_criterion_errors(client_for: Any, operator: Any, ticket: Ticket, data: dict[str, str], error: str) -> None:
    assert error in fragment_of(client_for(operator).post(url("criteria"), data, **HTMX))
    response = client_for(operator).post(url("criteria"), data)
    assert response.status_code == 400 and error in response.content.decode()
    assert not AcceptanceCriterion.objects.exists()


def test_it_adds_an_evaluation_case_and_refuses_a_blank_one(client_for: Any, operator: Any, ticket: Ticket) -> None:
    client = client_for(operator)
    content = fragment_of(client.post(url("cases"), {"name": "pii", "input": "call me at home", "private": "on"}, **HTMX))
    assert "call me at home" in content and "private" in content
    case = EvaluationCase.objects.get()
    assert (case.capability, case.private, case.created_by) == (ticket.capability, True, operator)
    response = client.post(url("cases"), {"name": "blank", "input": "   "})
    assert response.status_code == 400 and ("the input must not be blank" in response.content.decode() or "required" in response.content.decode())
    assert EvaluationCase.objects.count() == 1


def test_it_adds_a_proposal_that_serves_no_traffic(client_for: Any, operator: Any, ticket: Ticket) -> None:
    response = client_for(operator).post(url("proposals"), {"backend": "candidate", "position": "0", "displaced": "shift", "note": "cheaper"}, **HTMX)
    assert "Proposed candidate at position 0: awaiting review." in fragment_of(response)
    proposal = RouteProposal.objects.get()
    assert (proposal.route.status, proposal.route.proposed_by, proposal.route.ticket_ref, proposal.note) == ("proposed", operator, "FOS-142", "cheaper")
    assert active(ticket.capability) == ["spark", "triage"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"backend": "spark", "position": "0"}, "spark already serves classify-fast"),
        ({"backend": "candidate", "position": "3"}, "the last place is 2"),
        ({"backend": "candidate", "position": "-1"}, "greater than or equal to 0"),
        ({"backend": "nope", "position": "0"}, "Select a valid choice"),
        ({"backend": "candidate", "position": "0", "displaced": "explode"}, "Select a valid choice"),
    ],
)
def test_it_shows_proposal_errors(client_for: Any, operator: Any, ticket: Ticket, data: dict[str, str], error: str) -> None:
    data = {"displaced": "shift", **data}
    assert error in fragment_of(client_for(operator).post(url("proposals"), data, **HTMX))
    assert client_for(operator).post(url("proposals"), data).status_code == 400
    assert not RouteProposal.objects.exists()


def test_it_refuses_a_hosted_proposal_for_a_local_only_capability(client_for: Any, operator: Any, ticket: Ticket) -> None:
    Capability.objects.filter(pk=ticket.capability_id).update(privacy="local_only")
    content = fragment_of(client_for(operator).post(url("proposals"), {"backend": "frontier", "position": "0", "displaced": "shift"}, **HTMX))
    assert "frontier is hosted and classify-fast is local_only" in content
    assert not RouteProposal.objects.exists()


def test_it_sends_an_edited_approved_route_back_to_review_from_the_page(
    client_for: Any, operator: Any, reviewer: Any, proposal: RouteProposal, evidence: ComparisonRun
) -> None:
    review.approve(proposal=proposal, reviewer=reviewer, comment="fine", run=evidence)
    page = client_for(operator).get(DETAIL).content.decode()
    assert "Change this proposal (sends it back to review)" in page
    response = client_for(operator).post(url(f"proposals/{proposal.pk}/edit"), {"backend": "candidate", "position": "1", "displaced": "shift"}, **HTMX)
    assert "sent back to review" in fragment_of(response)
    route = Route.objects.get(pk=proposal.route_id)
    assert (route.status, route.approved_at) == ("proposed", None)
    assert active(proposal.ticket.capability) == ["spark", "triage"]


def test_it_shows_proposal_edit_errors(client_for: Any, operator: Any, proposal: RouteProposal) -> None:
    response = client_for(operator).post(url(f"proposals/{proposal.pk}/edit"), {"backend": "triage", "position": "0", "displaced": "shift"})
    assert response.status_code == 400 and "triage already serves classify-fast" in response.content.decode()


# Comparison runs from the ticket


def test_it_starts_a_comparison_that_runs_in_process(
    client_for: Any, operator: Any, proposal: RouteProposal, cases: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    routes = [r.pk for r in proposal.ticket.capability.routes.filter(status__in=["active", "proposed"])]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(operator).post(url("comparisons"), {"routes": routes})
    run = ComparisonRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/console/comparisons/{run.pk}/"
    run.refresh_from_db()
    assert run.status == "done" and run.ticket_ref == "FOS-142" and run.created_by == operator
    assert [lane["backend"] for lane in run.routes] == ["spark", "triage", "candidate"]
    assert run.baseline_route.backend.slug == "spark"
    assert [lane["role"] for lane in run.routes] == ["primary", "fallback 1", "proposed"]


@pytest.mark.parametrize(("choose", "error"), [(1, "choose between 2 and 6 routes"), (0, "This field is required")])
def test_it_shows_comparison_errors(client_for: Any, operator: Any, proposal: RouteProposal, cases: Any, choose: int, error: str) -> None:
    routes = [r.pk for r in proposal.ticket.capability.routes.all()][:choose]
    assert error in fragment_of(client_for(operator).post(url("comparisons"), {"routes": routes}, **HTMX))
    assert client_for(operator).post(url("comparisons"), {"routes": routes}).status_code == 400
    assert not ComparisonRun.objects.exists()


def test_it_needs_cases_to_compare(client_for: Any, operator: Any, proposal: RouteProposal) -> None:
    routes = [r.pk for r in proposal.ticket.capability.routes.all()]
    content = fragment_of(client_for(operator).post(url("comparisons"), {"routes": routes}, **HTMX))
    assert "classify-fast has no evaluation cases yet: add one first" in content


def test_it_refuses_a_baseline_outside_the_compared_routes(client_for: Any, operator: Any, proposal: RouteProposal, cases: Any) -> None:
    spark, triage = proposal.ticket.capability.routes.filter(status="active").order_by("position")
    data = {"routes": [spark.pk, triage.pk], "baseline": proposal.route_id}
    assert "the baseline must be one of the compared routes" in fragment_of(client_for(operator).post(url("comparisons"), data, **HTMX))


# Review from the page


def test_it_approves_from_the_page_and_shows_the_decision(
    client_for: Any, reviewer: Any, outsider: Any, proposal: RouteProposal, evidence: ComparisonRun
) -> None:
    data = {"decision": "approve", "comparison_run": evidence.pk, "comment": "meets the bar"}
    response = client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), data, **HTMX)
    assert "Approved: candidate now serves classify-fast." in fragment_of(response)
    assert json.loads(response["HX-Trigger"]) == {"ticketChanged": {"source": "proposals"}}
    assert active(proposal.ticket.capability) == ["candidate", "spark", "triage"]
    page = client_for(outsider).get(DETAIL).content.decode()
    assert "meets the bar" in page and "rita-reviewer" in page and f"run {evidence.pk}</a>" in page
    assert 'id="ticket-status">accepted<' in page


def test_it_shows_the_override_reason_on_the_ticket(
    client_for: Any, reviewer: Any, outsider: Any, proposal: RouteProposal, evidence: ComparisonRun
) -> None:
    AcceptanceCriterion.objects.create(ticket=proposal.ticket, metric="mean_cost_usd", comparison="at_most", threshold=0)
    data = {"decision": "approve", "comparison_run": evidence.pk, "comment": "worth it"}
    content = fragment_of(client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), data, **HTMX))
    assert "misses 1 of 3 criteria: give a reason to approve anyway, or reject" in content
    assert Route.objects.get(pk=proposal.route_id).status == "proposed"
    client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), {**data, "override_reason": "<b>budget</b> approved by finance"})
    page = client_for(outsider).get(DETAIL).content.decode()
    assert "override" in page and "&lt;b&gt;budget&lt;/b&gt; approved by finance" in page
    assert Review.objects.get().override_reason == "<b>budget</b> approved by finance"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"decision": "approve", "comment": "ok"}, "an approval cites the comparison run it rests on"),
        ({"decision": "approve", "comment": "  ", "with_run": True}, "This field is required"),
        ({"decision": "maybe", "comment": "ok", "with_run": True}, "Select a valid choice"),
        ({"decision": "approve", "comment": "ok", "comparison_run": "999999"}, "Select a valid choice"),
    ],
)
def test_it_shows_review_errors(
    client_for: Any, reviewer: Any, proposal: RouteProposal, evidence: ComparisonRun, data: dict[str, Any], error: str
) -> None:
    data = dict(data)
    if data.pop("with_run", False):
        data["comparison_run"] = evidence.pk
    assert error in fragment_of(client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), data, **HTMX))
    assert client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), data).status_code == 400
    assert not Review.objects.exists()


def test_it_refuses_an_unfinished_run_as_evidence(client_for: Any, reviewer: Any, proposal: RouteProposal, evidence: ComparisonRun) -> None:
    ComparisonRun.objects.filter(pk=evidence.pk).update(status="cancelled")
    data = {"decision": "approve", "comparison_run": evidence.pk, "comment": "ok"}
    assert "is cancelled, not done" in fragment_of(client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), data, **HTMX))


def test_it_rejects_from_the_page(client_for: Any, reviewer: Any, proposal: RouteProposal) -> None:
    response = client_for(reviewer).post(url(f"proposals/{proposal.pk}/review"), {"decision": "reject", "comment": "too slow"})
    assert response.status_code == 302
    assert Route.objects.get(pk=proposal.route_id).status == "rejected"
    assert Review.objects.get().decision == "rejected"
    assert PolicyRevision.objects.order_by("-number").first().summary == "test policy"  # the live policy is untouched


# The comparison page


def test_it_shows_routes_side_by_side_with_aggregates_charts_and_criteria(
    client_for: Any, outsider: Any, proposal: RouteProposal, evidence: ComparisonRun, install_policy: Any
) -> None:
    response = client_for(outsider).get(f"/console/comparisons/{evidence.pk}/")
    content = response.content.decode()
    assert response.status_code == 200
    assert 'id="side-by-side"' in content and content.count('class="case"') == 3
    assert content.count("<svg") == 4 and "Verification pass rate (%)" in content
    assert "fully inspectable" in content and "inspectable: a local model" in content
    assert content.count('data-met="true"') >= 2
    assert "meets all 2 criteria" in content
    assert "private" in content
    assert 'hx-trigger="every 1s"' not in content  # a finished run does not poll
    assert "/cancel/" not in content and "/resume/" not in content


def test_it_marks_answers_that_differ_and_cells_not_run(
    client_for: Any, outsider: Any, ticket: Ticket, install_policy: Any, sim: Any, cases: Any
) -> None:
    from tests.routing.test_executor import http_backend

    install_policy(backends={"frontier": http_backend(sim, "openai", "tag=frontier,answer=urgent", locality="hosted")}, capabilities={})
    frontier = Route.objects.create(capability=ticket.capability, backend=backend("frontier"), status="proposed")
    spark = ticket.capability.routes.get(backend__slug="spark", status="active")
    run = finished_run(ticket, [spark, frontier], cases)
    content = client_for(outsider).get(f"/console/comparisons/{run.pk}/").content.decode()
    assert content.count('badge warn">differs') == 2  # the two public cases: urgent vs billing
    assert "not run: private case, never sent to a hosted backend" in content
    assert sim.calls("tag=frontier,answer=urgent") == 2


def test_it_escapes_model_output(client_for: Any, outsider: Any, ticket: Ticket, install_policy: Any, sim: Any, cases: Any) -> None:
    from tests.routing.test_executor import http_backend

    install_policy(backends={"evil": http_backend(sim, "ollama", "answer=<script>alert(1)</script>")}, capabilities={})
    evil = Route.objects.create(capability=ticket.capability, backend=backend("evil"), status="proposed")
    run = finished_run(ticket, [ticket.capability.routes.get(backend__slug="spark"), evil], cases)
    content = client_for(outsider).get(f"/console/comparisons/{run.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in content and "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_it_polls_progress_while_a_run_is_going_and_stops_when_it_ends(
    client_for: Any, operator: Any, proposal: RouteProposal, cases: Any
) -> None:
    routes = [proposal.route, *proposal.ticket.capability.routes.filter(status="active")]
    run = comparisons.create_run(capability=proposal.ticket.capability, routes=routes, cases=cases, ticket_ref="FOS-142")
    client = client_for(operator)
    progress = f"/console/comparisons/{run.pk}/progress/"

    queued = fragment_of(client.get(progress, **HTMX))
    assert 'hx-trigger="every 1s"' in queued and "0 / 9 cells" in queued and "Cancel run" in queued
    assert "HX-Trigger" not in client.get(progress, **HTMX)
    page = client.get(f"/console/comparisons/{run.pk}/").content.decode()
    assert 'hx-trigger="every 1s"' in page and "pending…" in page
    assert 'id="run-progress-' in client.get(DETAIL).content.decode()

    comparisons.execute_run(run_id=run.pk)
    done = client.get(progress, **HTMX)
    assert 'hx-trigger="every 1s"' not in fragment_of(done) and "9 / 9 cells" in done.content.decode()
    assert "runChanged" in json.loads(done["HX-Trigger"])
    live = fragment_of(client.get(f"/console/comparisons/{run.pk}/", HTTP_HX_TARGET="comparison-live", **HTMX))
    assert live.lstrip().startswith('<section id="comparison-live"') and 'hx-trigger="runChanged from:body"' in live
    assert client.get(progress).status_code == 302  # without htmx: the comparison page


def test_it_cancels_and_resumes_a_run(
    client_for: Any, operator: Any, proposal: RouteProposal, cases: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    routes = [proposal.route, *proposal.ticket.capability.routes.filter(status="active")]
    run = comparisons.create_run(capability=proposal.ticket.capability, routes=routes, cases=cases, ticket_ref="FOS-142")
    client = client_for(operator)
    response = client.post(f"/console/comparisons/{run.pk}/cancel/", **HTMX)
    content = fragment_of(response)
    assert "Cancelled" in content and 'data-status="cancelled"' in content and "Resume run" in content
    assert client.post(f"/console/comparisons/{run.pk}/cancel/").status_code == 302  # nothing to cancel now

    with django_capture_on_commit_callbacks(execute=True):
        content = fragment_of(client.post(f"/console/comparisons/{run.pk}/resume/", **HTMX))
    assert "Resumed" in content
    run.refresh_from_db()
    assert run.status == "done" and run.results.count() == 9
    content = fragment_of(client.post(f"/console/comparisons/{run.pk}/resume/", **HTMX))
    assert "cannot be resumed now" in content
