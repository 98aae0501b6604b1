"""Console pages for capability contracts, their routes, and the policy revision history.

Everyone signed in may look; operators may change. Every change is saved together with one
policy revision naming its author, and answers an HTMX request with the re-rendered fragment
(plus a `policyChanged` event for the other regions) and a plain request with a redirect.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event

from fos_console.htmx import HtmxHttpRequest, fragment_target, fragment_template
from registry.forms import ContractForm, RouteMoveForm, RouteToggleForm
from registry.models import Capability, PolicyRevision, Route
from registry.policy import capability_policy, record_revision
from registry.revisions import SECTIONS, contract_summary, diff_policies, entry_rows, revisions_touching, with_diffs
from registry.roles import is_operator
from registry.route_order import (
    DIRECTIONS,
    active_routes,
    apply_order,
    approvals_lost,
    enable_needs_review,
    moved_order,
    set_enabled,
)

CAPABILITY_PAGE = "registry/capability_detail.html"
# Regions of the capability page an HTMX request may ask for by its HX-Target.
CAPABILITY_FRAGMENTS = ("contract", "routes", "recent-revisions")
REVISIONS_PER_PAGE = 20


def _get_capability_for_user(request: HtmxHttpRequest, slug: str, *, change: bool = False) -> Capability:
    """The capability named by `slug` (404 if none); with `change`, only for operators (403)."""
    capability = get_object_or_404(Capability, slug=slug)
    if change and not is_operator(request.user):
        raise PermissionDenied("Only operators change policy.")
    return capability


@login_required
@require_GET
@vary_on_headers("HX-Request")
def capability_list(request: HtmxHttpRequest) -> HttpResponse:
    live = Route.objects.filter(status=Route.Status.ACTIVE).select_related("backend").order_by("position", "id")
    capabilities = Capability.objects.prefetch_related(Prefetch("routes", queryset=live, to_attr="active"))
    template = fragment_template(request, "registry/capability_list.html", "capability-table")
    return render(request, template, {"capabilities": capabilities})


@login_required
@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def capability_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    capability = _get_capability_for_user(request, slug)
    return _render_capability(request, capability, fragment=fragment_target(request, CAPABILITY_FRAGMENTS))


@login_required
@require_POST
def capability_edit(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    capability = _get_capability_for_user(request, slug, change=True)
    before = capability_policy(capability, [])
    form = ContractForm(request.POST, instance=capability)
    if not form.is_valid():
        capability.refresh_from_db()  # validation wrote the rejected values onto the instance
        return _render_capability(
            request, capability, fragment="contract", form=form, status=200 if request.htmx else 400
        )
    summary = contract_summary(slug=slug, before=before, after=capability_policy(capability, []))
    if summary:
        with transaction.atomic():
            capability.save(update_fields=[*ContractForm.Meta.fields, "updated_at"])
            record_revision(author=request.user.get_username(), summary=summary)
    note = summary or "No changes to save."
    return _after_change(request, capability, fragment="contract", note=note, changed=bool(summary))


@login_required
@require_POST
def route_move(request: HtmxHttpRequest, slug: str, route_id: int) -> HttpResponse:
    capability = _get_capability_for_user(request, slug, change=True)
    with transaction.atomic():
        route = _locked_route(capability, route_id)
        routes = active_routes(capability=capability, lock=True)
        form = RouteMoveForm(request.POST, routes=routes, route=route)
        if form.is_valid():
            outcome = apply_order(
                capability=capability,
                before=routes,
                after=form.cleaned_data["order"],
                author=request.user.get_username(),
                what=f"moved {route.backend.slug} {form.cleaned_data['direction']}",
            )
    if not form.is_valid():
        return _route_error(request, capability, form)
    return _after_change(request, capability, fragment="routes", note=outcome.summary, changed=True)


@login_required
@require_POST
def route_toggle(request: HtmxHttpRequest, slug: str, route_id: int) -> HttpResponse:
    capability = _get_capability_for_user(request, slug, change=True)
    with transaction.atomic():
        route = _locked_route(capability, route_id)
        form = RouteToggleForm(request.POST, routes=active_routes(capability=capability, lock=True), route=route)
        if form.is_valid():
            outcome = set_enabled(
                capability=capability,
                route=route,
                enabled=form.cleaned_data["enabled"],
                author=request.user.get_username(),
            )
    if not form.is_valid():
        return _route_error(request, capability, form)
    return _after_change(request, capability, fragment="routes", note=outcome.summary, changed=True)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def revision_list(request: HtmxHttpRequest) -> HttpResponse:
    before = request.GET.get("before", "")
    revisions = PolicyRevision.objects.order_by("-number")
    if before.isdigit():
        revisions = revisions.filter(number__lt=int(before))
    rows = list(revisions[: REVISIONS_PER_PAGE + 1])
    page, previous = rows[:REVISIONS_PER_PAGE], rows[REVISIONS_PER_PAGE] if len(rows) > REVISIONS_PER_PAGE else None
    context = {
        "entries": with_diffs(page, previous=previous),
        "older": page[-1].number if previous else None,
        "paged": before.isdigit(),
    }
    template = fragment_template(request, "registry/revision_list.html", "revision-list")
    return render(request, template, context)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def revision_detail(request: HtmxHttpRequest, number: int) -> HttpResponse:
    revision = get_object_or_404(PolicyRevision, number=number)
    older = PolicyRevision.objects.filter(number__lt=number).order_by("-number").first()
    newer = PolicyRevision.objects.filter(number__gt=number).order_by("number").values_list("number", flat=True).first()
    snapshot = revision.snapshot
    policy = {
        section: [(slug, entry_rows(section, entry)) for slug, entry in sorted(snapshot.get(section, {}).items())]
        for section in SECTIONS
    }
    context = {
        "revision": revision,
        "older": older.number if older else None,
        "newer": newer,
        "changes": diff_policies(before=older.snapshot if older else {}, after=revision.snapshot),
        "policy": policy,
    }
    template = fragment_template(request, "registry/revision_detail.html", "revision")
    return render(request, template, context)


def _locked_route(capability: Capability, route_id: int) -> Route:
    """One of the capability's routes (404 if not), locked until the caller's transaction ends."""
    routes = capability.routes.select_related("backend", "capability").select_for_update(of=("self",))
    return get_object_or_404(routes, pk=route_id)


def _route_rows(routes: list[Route]) -> list[dict[str, Any]]:
    """Each active route with the moves it can make and whose approval each move would cost."""
    rows = []
    for route in routes:
        moves = []
        for direction in DIRECTIONS:
            order = moved_order(routes=routes, route_id=route.pk, direction=direction)
            if order is not None:
                lost = [r.backend.slug for r in approvals_lost(before=routes, after=order)]
                moves.append({"direction": direction, "lost": lost})
        rows.append({"route": route, "moves": moves})
    return rows


def _render_capability(
    request: HtmxHttpRequest, capability: Capability, *, fragment: str | None, status: int = 200, **extra: Any
) -> HttpResponse:
    routes = active_routes(capability=capability)
    others = capability.routes.filter(
        status__in=[Route.Status.PROPOSED, Route.Status.APPROVED, Route.Status.RETIRED]
    ).select_related("backend", "proposed_by")
    operator = is_operator(request.user)
    context = {
        "capability": capability,
        "route_rows": _route_rows(routes),
        "other_routes": [
            {"route": other, "enable_needs_review": enable_needs_review(route=other, routes=routes)}
            for other in others.order_by("status", "position", "id")
        ],
        "verify_detail": _verify_detail(capability.verify),
        "recent": revisions_touching(slug=capability.slug),
        "form": ContractForm(instance=capability) if operator else None,
    }
    context.update(extra)
    template = CAPABILITY_PAGE + (f"#{fragment}" if fragment and request.htmx else "")
    return render(request, template, context, status=status)


def _verify_detail(rule: dict[str, Any]) -> str:
    """A verification rule's parameter in words (templates would read `rule.values` as dict.values)."""
    kind = rule.get("kind")
    if kind == "one_of":
        return ", ".join(map(str, rule.get("values", [])))
    if kind == "regex":
        return str(rule.get("pattern", ""))
    if kind == "json_schema":
        return json.dumps(rule.get("schema"), ensure_ascii=False)
    if kind == "max_chars":
        return f"at most {rule.get('limit')} characters"
    return ""


def _route_error(
    request: HtmxHttpRequest, capability: Capability, form: RouteMoveForm | RouteToggleForm
) -> HttpResponse:
    errors = [message for messages_ in form.errors.values() for message in messages_]
    return _render_capability(
        request, capability, fragment="routes", route_errors=errors, status=200 if request.htmx else 400
    )


def _after_change(
    request: HtmxHttpRequest, capability: Capability, *, fragment: str, note: str, changed: bool
) -> HttpResponse:
    if not request.htmx:
        messages.success(request, note)
        return redirect(reverse("registry:capability", kwargs={"slug": capability.slug}) + f"#{fragment}")
    response = _render_capability(request, capability, fragment=fragment, **{f"{fragment}_note": note})
    if changed:
        trigger_client_event(response, "policyChanged")
    return response
