"""The review rules hold in the admin: no route goes live there without a reviewer, and moving
an approved route sends it back to review, on the route's own page and in the capability's
inline alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from registry.models import Capability, PolicyRevision, Route
from tests.routing.test_executor import TRIAGE, classify

pytestmark = pytest.mark.django_db


@pytest.fixture
def routes(install_policy: Any) -> dict[str, Route]:
    install_policy(
        backends={"triage": TRIAGE, "triage-b": TRIAGE},
        capabilities={"classify-fast": classify(["triage", "triage-b"])},
    )
    reviewer = get_user_model().objects.create_user(username="rita")
    first, second = Route.objects.filter(status=Route.Status.ACTIVE).order_by("position")
    first.approved_by, first.approved_at = reviewer, timezone.now()
    first.save()
    return {"approved": first, "imported": second}


def route_data(route: Route, **changes: Any) -> dict[str, Any]:
    data = {
        "capability": route.capability_id,
        "position": route.position,
        "backend": route.backend_id,
        "status": route.status,
        "proposed_by": route.proposed_by_id or "",
        "ticket_ref": route.ticket_ref,
    }
    data.update(changes)
    return data


def form_data(form: Any, prefix: str = "") -> dict[str, Any]:
    """What a browser would post back for an unchanged form."""
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        key = f"{prefix}{name}"
        value = form[name].value()  # already prepared for the widget, as rendered
        if type(field).__name__ == "BooleanField":
            if value:
                data[key] = "on"
            continue
        data[key] = "" if value is None else value
        if field.show_hidden_initial:
            data[f"initial-{key}"] = data[key]
    return data


def inline_post(client: Client, capability: Capability, **changes: dict[str, Any]) -> Any:
    """Post the capability's admin page back with changes to its route rows (keyed by route pk)."""
    url = f"/admin/registry/capability/{capability.pk}/change/"
    page = client.get(url)
    data = form_data(page.context["adminform"].form)
    formset = page.context["inline_admin_formsets"][0].formset
    data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
    for index, form in enumerate(formset.forms):
        data.update(form_data(form, prefix=f"{formset.prefix}-{index}-"))
        data.update({f"{formset.prefix}-{index}-{k}": v for k, v in changes.get(str(form.instance.pk), {}).items()})
    return client.post(url, data)


def test_moving_an_approved_route_on_its_page_sends_it_back_to_review(
    admin_client: Client, routes: dict[str, Route]
) -> None:
    route = routes["approved"]
    response = admin_client.post(f"/admin/registry/route/{route.pk}/change/", route_data(route, position=5), follow=True)
    assert response.status_code == 200
    assert "back in review" in response.content.decode()
    route.refresh_from_db()
    assert (route.position, route.status, route.approved_at, route.approved_by) == (5, "proposed", None, None)
    assert PolicyRevision.objects.latest("number").snapshot["capabilities"]["classify-fast"]["routes"] == ["triage-b"]


def test_moving_an_approved_route_in_the_capability_inline_sends_it_back_to_review(
    admin_client: Client, routes: dict[str, Route]
) -> None:
    approved, imported = routes["approved"], routes["imported"]
    response = inline_post(
        admin_client,
        approved.capability,
        **{str(approved.pk): {"position": 1}, str(imported.pk): {"position": 0}},
    )
    assert response.status_code == 302
    approved.refresh_from_db()
    imported.refresh_from_db()
    assert (approved.status, approved.approved_at) == ("proposed", None)
    assert (imported.status, imported.position) == ("active", 0)  # never approved: nothing to lose


def test_an_approved_route_edited_in_place_keeps_its_approval(admin_client: Client, routes: dict[str, Route]) -> None:
    route = routes["approved"]
    response = admin_client.post(
        f"/admin/registry/route/{route.pk}/change/", route_data(route, ticket_ref="FOS-9 note")
    )
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.status == "active" and route.approved_at is not None and route.ticket_ref == "FOS-9 note"


@pytest.mark.parametrize("status", ["active", "approved", "retired"])
def test_a_proposal_cannot_be_made_live_in_the_admin(
    admin_client: Client, routes: dict[str, Route], status: str
) -> None:
    proposal = Route.objects.create(
        capability=routes["approved"].capability, backend=routes["imported"].backend, position=2
    )
    revisions = PolicyRevision.objects.count()
    response = admin_client.post(f"/admin/registry/route/{proposal.pk}/change/", route_data(proposal, status=status))
    assert response.status_code == 200
    assert "changes status only by a reviewer&#x27;s decision" in response.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == "proposed"
    assert PolicyRevision.objects.count() == revisions


def test_a_route_added_in_the_admin_starts_as_proposed(admin_client: Client, routes: dict[str, Route]) -> None:
    capability = routes["approved"].capability
    data = route_data(routes["imported"], position=7, status="active")
    response = admin_client.post("/admin/registry/route/add/", data)
    assert response.status_code == 200
    assert "starts as proposed" in response.content.decode()
    assert not capability.routes.filter(position=7).exists()
    response = admin_client.post("/admin/registry/route/add/", {**data, "status": "proposed"})
    assert response.status_code == 302
    assert capability.routes.get(position=7).status == "proposed"


def test_a_retired_route_from_the_policy_file_can_be_enabled_again(
    admin_client: Client, routes: dict[str, Route]
) -> None:
    route = routes["imported"]
    Route.objects.filter(pk=route.pk).update(status=Route.Status.RETIRED)
    route.refresh_from_db()
    response = admin_client.post(f"/admin/registry/route/{route.pk}/change/", route_data(route, status="active"))
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.status == "active"


def test_the_approval_fields_are_read_only(admin_client: Client, routes: dict[str, Route]) -> None:
    route = routes["imported"]
    reviewer = get_user_model().objects.get(username="rita")
    admin_client.post(
        f"/admin/registry/route/{route.pk}/change/",
        route_data(route, approved_by=reviewer.pk, approved_at="2026-01-01 00:00:00"),
    )
    route.refresh_from_db()
    assert route.approved_by is None and route.approved_at is None
