"""Proof pages: making one from the ticket page, the preview, publish and unpublish, exports,
and the public page, by role and by method."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from routing.models import ComparisonRun
from tests.tickets.conftest import HTMX
from tests.tickets.test_proof import approved, evidence, proof, proposal, traffic, validate  # noqa: F401  (fixtures)
from tickets.models import ProofArtifact, Ticket

pytestmark = pytest.mark.django_db

TICKET = "/console/tickets/FOS-142/"
MAKE = "/console/tickets/FOS-142/proofs/"


def preview(proof: ProofArtifact) -> str:  # noqa: F811
    return f"/console/proofs/{proof.slug}/"


def public(proof: ProofArtifact) -> str:  # noqa: F811
    return f"/proof/{proof.slug}/"


def published(proof: ProofArtifact) -> ProofArtifact:  # noqa: F811
    proof.published_at = proof.created_at
    proof.save(update_fields=["published_at"])
    return proof


def make_data(run: ComparisonRun, **extra: Any) -> dict[str, Any]:
    return {"comparison_run": run.pk, "sample_size": "3", "sample_outcome": "any", **extra}


# Access and methods


def test_it_sends_anonymous_visitors_to_sign_in_for_console_proof_pages(client: Client, proof: ProofArtifact) -> None:  # noqa: F811
    for page in (preview(proof), f"{preview(proof)}proof.json"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), page
    for action in (f"{preview(proof)}publish/", MAKE):
        assert client.post(action, {}).status_code == 302
    assert ProofArtifact.objects.get().published_at is None and ProofArtifact.objects.count() == 1


@pytest.mark.parametrize("role", ["outsider", "reviewer"])
def test_it_lets_only_operators_make_publish_and_unpublish(
    request: pytest.FixtureRequest, client_for: Any, role: str, proof: ProofArtifact, approved: ComparisonRun  # noqa: F811
) -> None:
    client = client_for(request.getfixturevalue(role))
    for action in (MAKE, f"{preview(proof)}publish/", f"{preview(proof)}unpublish/"):
        assert client.post(action, make_data(approved)).status_code == 403, action
        assert client.post(action, make_data(approved), **HTMX).status_code == 403, action
    assert ProofArtifact.objects.count() == 1 and ProofArtifact.objects.get().published_at is None
    # They may look and export, but are offered neither publishing nor making.
    page = client.get(preview(proof)).content.decode()
    assert "publish/" not in page and "Cheaper classification" in page
    assert MAKE not in client.get(TICKET).content.decode()
    for fmt in ("html", "md", "json"):
        assert client.get(f"{preview(proof)}proof.{fmt}").status_code == 200


def test_it_refuses_the_wrong_method_everywhere(client_for: Any, operator: Any, proof: ProofArtifact) -> None:  # noqa: F811
    client = client_for(operator)
    published(proof)
    for page in (preview(proof), f"{preview(proof)}proof.md", public(proof), f"{public(proof)}proof.json"):
        assert client.post(page).status_code == 405, page
        assert Client().post(page).status_code in (302, 405), page
    for action in (MAKE, f"{preview(proof)}publish/", f"{preview(proof)}unpublish/"):
        assert client.get(action).status_code == 405, action


def test_it_answers_404_for_unknown_proofs_tickets_and_formats(client_for: Any, operator: Any, proof: ProofArtifact) -> None:  # noqa: F811
    client = client_for(operator)
    assert client.get("/console/proofs/fos-142-nosuchxx/").status_code == 404
    assert client.post("/console/proofs/fos-142-nosuchxx/publish/").status_code == 404
    assert client.post("/console/tickets/FOS-999/proofs/", {}).status_code == 404
    assert client.get(f"{preview(proof)}proof.pdf").status_code == 404
    published(proof)
    assert Client().get(f"{public(proof)}proof.xml").status_code == 404
    assert Client().get("/proof/fos-142-nosuchxx/").status_code == 404


# Making one


def test_it_offers_operators_a_proof_from_a_finished_run(client_for: Any, operator: Any, ticket: Ticket, approved: ComparisonRun) -> None:  # noqa: F811
    page = client_for(operator).get(TICKET).content.decode()
    assert f'action="{MAKE}"' in page and f'<option value="{approved.pk}" selected>run {approved.pk}' in page
    ComparisonRun.objects.filter(pk=approved.pk).update(status="cancelled")
    page = client_for(operator).get(TICKET).content.decode()
    assert f'action="{MAKE}"' not in page and 'id="proof-needs-run"' in page


def test_it_makes_a_proof_and_opens_its_preview(client_for: Any, operator: Any, approved: ComparisonRun, traffic: Any) -> None:  # noqa: F811
    client = client_for(operator)
    response = client.post(MAKE, make_data(approved, sample_outcome="primary"))
    made = ProofArtifact.objects.get()
    assert response.status_code == 302 and response["Location"] == preview(made)
    assert (made.created_by, made.comparison_run, made.content["route_log_sample"]["size"]) == (operator, approved, 3)
    assert made.content["route_log_sample"]["outcome"] == "primary"
    response = client.post(MAKE, make_data(approved), **HTMX)
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/console/proofs/fos-142-")
    assert ProofArtifact.objects.count() == 2
    page = client.get(TICKET).content.decode()
    assert page.count('<tr id="proof-fos-142-') == 2 and "not published" in page


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"sample_size": "21"}, "less than or equal to 20"),
        ({"sample_size": "-1"}, "greater than or equal to 0"),
        ({"comparison_run": "9999"}, "Select a valid choice"),
        ({"sample_outcome": "weird"}, "Select a valid choice"),
    ],
)
def test_it_shows_proof_form_errors(client_for: Any, operator: Any, approved: ComparisonRun, data: dict[str, str], error: str) -> None:  # noqa: F811
    client = client_for(operator)
    response = client.post(MAKE, make_data(approved, **data))
    assert response.status_code == 400 and error in response.content.decode()
    response = client.post(MAKE, make_data(approved, **data), **HTMX)
    content = response.content.decode()
    assert response.status_code == 200 and "<html" not in content and 'id="proofs"' in content and error in content
    assert not ProofArtifact.objects.exists()


# The preview, publishing, exports


def test_it_previews_the_proof_with_controls_for_operators(client_for: Any, operator: Any, proof: ProofArtifact) -> None:  # noqa: F811
    page = client_for(operator).get(preview(proof)).content.decode()
    assert 'id="proof-controls"' in page and f'action="{preview(proof)}publish/"' in page and "not published" in page
    for fmt in ("html", "md", "json"):
        assert f'href="{preview(proof)}proof.{fmt}"' in page
    assert 'id="proof-criteria-table"' in page and page.count('<svg class="chart"') == 4
    fragment = client_for(operator).get(preview(proof), **HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="proof-controls"') and "<html" not in fragment


def test_it_answers_htmx_on_the_ticket_page_with_the_proofs_region(client_for: Any, outsider: Any, proof: ProofArtifact) -> None:  # noqa: F811
    response = client_for(outsider).get(TICKET, HTTP_HX_TARGET="proofs", **HTMX)
    content = response.content.decode()
    assert content.lstrip().startswith('<section id="proofs"') and "<html" not in content
    assert f'href="{preview(proof)}"' in content and MAKE not in content


def test_it_publishes_and_unpublishes(client_for: Any, operator: Any, proof: ProofArtifact) -> None:  # noqa: F811
    client, anonymous = client_for(operator), Client()
    assert anonymous.get(public(proof)).status_code == 404
    response = client.post(f"{preview(proof)}publish/")
    assert response.status_code == 302 and response["Location"] == preview(proof)
    assert ProofArtifact.objects.get().is_published
    assert anonymous.get(public(proof)).status_code == 200
    assert anonymous.get(f"{public(proof)}proof.json").status_code == 200
    response = client.post(f"{preview(proof)}unpublish/")
    assert response.status_code == 302 and not ProofArtifact.objects.get().is_published
    for page in (public(proof), f"{public(proof)}proof.html", f"{public(proof)}proof.md", f"{public(proof)}proof.json"):
        assert anonymous.get(page).status_code == 404, page
    # The preview stays, for signed-in users.
    assert client.get(preview(proof)).status_code == 200


def test_it_publishes_over_htmx_with_the_controls_fragment(client_for: Any, operator: Any, proof: ProofArtifact) -> None:  # noqa: F811
    client = client_for(operator)
    response = client.post(f"{preview(proof)}publish/", **HTMX)
    content = response.content.decode()
    assert response.status_code == 200 and "<html" not in content and 'id="proof-controls"' in content
    assert f"Published at {public(proof)}." in content and f'action="{preview(proof)}unpublish/"' in content
    assert "ticketChanged" in response["HX-Trigger"]
    again = client.post(f"{preview(proof)}publish/", **HTMX).content.decode()
    assert "It was already published." in again
    content = client.post(f"{preview(proof)}unpublish/", **HTMX).content.decode()
    assert "now answers 404" in content and f'action="{preview(proof)}publish/"' in content


def test_it_exports_html_markdown_and_json(client_for: Any, outsider: Any, proof: ProofArtifact) -> None:  # noqa: F811
    client = client_for(outsider)
    html = client.get(f"{preview(proof)}proof.html")
    assert html["Content-Type"] == "text/html; charset=utf-8"
    assert html["Content-Disposition"] == f'attachment; filename="proof-{proof.slug}.html"'
    body = html.content.decode()
    assert "<style>" in body and "<script" not in body and "/console/" not in body and "proof.json" not in body
    markdown = client.get(f"{preview(proof)}proof.md")
    assert markdown["Content-Type"] == "text/markdown; charset=utf-8" and markdown.content.decode().startswith("# Proof for FOS-142")
    data = client.get(f"{preview(proof)}proof.json")
    assert data["Content-Type"] == "application/json; charset=utf-8"
    validate(json.loads(data.content))
    assert json.loads(data.content) == proof.content


# The public page


def test_it_shows_the_published_proof_to_anyone_and_nothing_from_the_console(
    client_for: Any, operator: Any, proof: ProofArtifact  # noqa: F811
) -> None:
    published(proof)
    response = Client().get(public(proof))
    page = response.content.decode()
    assert response.status_code == 200
    assert "FOS-142" in page and "Cheaper classification" in page and "verification pass rate at least 1" in page
    assert "meets all 2 criteria" in page and "rita-reviewer" in page and "approved" in page
    for absent in ("/console/", "csrfmiddlewaretoken", "<script", "<form", "Sign out", "/static/", "hx-", "olivia-operator"):
        assert absent not in page, absent
    assert "Set-Cookie" not in response.headers and not response.cookies
    assert "default-src 'none'" in response["Content-Security-Policy"] and "no-store" in response["Cache-Control"]
    assert 'href="proof.json"' in page
    # Signed in or not, the same page: nothing from the session reaches it.
    assert client_for(operator).get(public(proof)).content.decode() == page
