"""Console pages of the routing app: the dashboard, the route log and one route, the backends
with their health probes, and a capability's dry-run and try-it boxes.

Everyone signed in may look. Operators may act (probe a backend, route a real call); reviewers
may also dry-run, which calls nothing. An HTMX request gets the page's fragment, a plain one
the whole page, so every page works without JavaScript.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event
from kombu.exceptions import OperationalError

from fos_console.htmx import HtmxHttpRequest, fragment_template, wants_fragment
from registry.models import Backend
from registry.roles import console_context
from registry.secret_refs import describe
from routing import breaker, charts, executor, planner, probe, rollup, stats, tasks
from routing.adapters.base import BackendSpec
from routing.forms import CapabilityInputForm, RouteLogFilterForm
from routing.models import RouteLog


def _status(request: HtmxHttpRequest, *, valid: bool) -> int:
    # htmx swaps only 2xx answers, so a fragment carries its errors with a 200.
    return 200 if valid or wants_fragment(request) else 400


def _get_capability_for_user(request: HtmxHttpRequest, slug: str, *, action: str) -> planner.CapabilitySpec:
    """The capability `slug` in the current policy (404 if none), if the user may `action` it:
    "try" (route a real call) is for operators, "dry-run" also for reviewers (else 403)."""
    spec = planner.load_snapshot().capabilities.get(slug)
    if spec is None:
        raise Http404("No such capability in the current policy.")
    roles = console_context(request)
    allowed = roles["can_edit_policy"] or (action == "dry-run" and roles["can_review"])
    if not allowed:
        raise PermissionDenied("Your role may not do this.")
    return spec


def _get_backend_for_user(request: HtmxHttpRequest, slug: str) -> BackendSpec:
    """The backend `slug` in the current policy (404 if none), for operators only (403)."""
    spec = planner.load_snapshot().backends.get(slug)
    if spec is None:
        raise Http404("No such backend in the current policy.")
    if not console_context(request)["can_edit_policy"]:
        raise PermissionDenied("Only operators probe backends.")
    return spec


@login_required
@require_GET
@vary_on_headers("HX-Request")
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    key = request.GET.get("window", stats.DEFAULT_WINDOW)
    error = ""
    if key not in stats.WINDOWS:
        error = f"Unknown window {key!r}: choose 1h, 24h or 7d. Showing the last 24 hours."
        key = stats.DEFAULT_WINDOW
    window, now = stats.WINDOWS[key], timezone.now()
    # Hours that have ended since the last roll-up are rolled up first (usually none, or the
    # one that just ended), so the page reads whole hours from the rollup even without the
    # periodic task. If another roll-up is running, the page reads those hours from the route
    # log instead of waiting: the figures are the same.
    rollup.catch_up(since=now - window.span, now=now, wait=False)
    data = stats.dashboard(window=window, now=now)
    context = {
        "data": data,
        "windows": stats.WINDOWS.values(),
        "error": error,
        "calls_chart": charts.calls_chart(data.buckets),
        "latency_chart": charts.latency_chart(data.buckets),
        "colours": charts.COLOURS,
    }
    template = fragment_template(request, "routing/dashboard.html", "dashboard-body")
    return render(request, template, context, status=_status(request, valid=not error))


@login_required
@require_GET
@vary_on_headers("HX-Request")
def route_log(request: HtmxHttpRequest) -> HttpResponse:
    snapshot = planner.load_snapshot()
    form = RouteLogFilterForm(request.GET, capabilities=sorted(snapshot.capabilities), backends=sorted(snapshot.backends))
    page = None
    if form.is_valid():
        page = stats.route_log_page(filters=form.filters(now=timezone.now()), cursor=form.cleaned_data["cursor"])
    # The filters as a query string without empty fields and the cursor: the base of the
    # table's own refresh URL and of its page links.
    query = urlencode([(key, value) for key, value in request.GET.items() if value and key != "cursor"])
    context = {
        "form": form,
        "page": page,
        "query": query,
        "paged": bool(request.GET.get("cursor")),
        "live": form.is_valid() and form.cleaned_data["live"],
    }
    template = fragment_template(request, "routing/route_log.html", "route-table")
    response = render(request, template, context, status=_status(request, valid=page is not None))
    if wants_fragment(request) and request.htmx.trigger == "route-filters":
        # htmx would push every field of the form, empty ones too; push the tidy URL instead.
        response["HX-Push-Url"] = f"{request.path}?{query}" if query else request.path
    return response


@login_required
@require_GET
def route_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(RouteLog.objects.prefetch_related("attempts"), pk=pk)
    metadata = entry.metadata if isinstance(entry.metadata, dict) else {"value": entry.metadata}
    attempts_ms = sum(attempt.latency_ms for attempt in entry.attempts.all())
    context = {
        "entry": entry,
        "attempts_ms": attempts_ms,
        "router_ms": max(entry.latency_ms - attempts_ms, 0.0),
        "reasons": stats.reasons(entry.reasons if isinstance(entry.reasons, list) else [entry.reasons]),
        "metadata": sorted(metadata.items()),
    }
    return render(request, "routing/route_detail.html", context)


@login_required
@require_GET
def backends(request: HtmxHttpRequest) -> HttpResponse:
    registry = list(Backend.objects.order_by("slug"))
    circuits = breaker.states([backend.slug for backend in registry])
    snapshot = planner.load_snapshot()
    rows = [
        {
            "backend": backend,
            "secret": describe(backend.secret_ref),
            "circuit": circuits[backend.slug],
            "in_policy": backend.slug in snapshot.backends,
        }
        for backend in registry
    ]
    return render(request, "routing/backends.html", {"rows": rows, "revision": snapshot.revision})


@login_required
@require_POST
def backend_probe(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    spec = _get_backend_for_user(request, slug)
    task_id = uuid.uuid4().hex
    probe.mark_pending(task_id=task_id, slug=spec.slug)
    try:
        # Nothing this request wrote is read by the task, so it need not wait for a commit.
        tasks.probe_backend.apply_async(args=[spec.slug], task_id=task_id, retry=False)
    except OperationalError:
        probe.store_failure(task_id=task_id, slug=spec.slug, detail="the task queue is unreachable; try again")
    if not wants_fragment(request):
        return redirect("routing:probe-result", task_id=task_id)
    return _render_probe(request, task_id)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def probe_result(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    return _render_probe(request, task_id)


def _render_probe(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    result = probe.load(task_id=task_id)
    if result is None:
        raise Http404("No such probe, or its result has expired.")
    template = fragment_template(request, "routing/probe.html", "probe")
    return render(request, template, {"probe": result, "task_id": task_id})


@login_required
@require_POST
def dry_run(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    spec = _get_capability_for_user(request, slug, action="dry-run")
    form = CapabilityInputForm(request.POST)
    plan = None
    if form.is_valid():
        try:
            plan = planner.plan(spec.slug, input_chars=len(form.cleaned_data["input"]))
        except planner.UnknownCapability:
            raise Http404("No such capability in the current policy.") from None
    context: dict[str, Any] = {"capability": spec, "form": form, "plan": plan}
    if plan is not None:
        context["reasons"] = stats.reasons(plan.reasons)
        context["tokens_in"] = planner.estimate_tokens_in(text_chars=len(form.cleaned_data["input"]), instructions=spec.instructions)
        context["tokens_out"] = planner.EXPECTED_OUTPUT_TOKENS.get(spec.intent, 512)
    template = fragment_template(request, "routing/dry_run.html", "dry-run-result")
    return render(request, template, context, status=_status(request, valid=plan is not None))


@login_required
@require_POST
def try_it(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    spec = _get_capability_for_user(request, slug, action="try")
    form = CapabilityInputForm(request.POST)
    template = fragment_template(request, "routing/try_it.html", "try-it-result")
    if not form.is_valid():
        return render(request, template, {"capability": spec, "form": form}, status=_status(request, valid=False))
    output, failure = "", None
    try:
        result = executor.run(spec.slug, form.cleaned_data["input"], caller=f"console:{request.user.get_username()}")
        output, route_id = result.output, result.route_id
    except executor.RouteFailed as failed:
        failure, route_id = failed, failed.route_id
    except planner.UnknownCapability:
        raise Http404("No such capability in the current policy.") from None
    context = {
        "capability": spec,
        "form": form,
        "entry": RouteLog.objects.get(pk=route_id),
        "output": output,
        "failure": failure,
        "reasons": stats.reasons(failure.reasons) if failure else [],
    }
    # A failed call is logged too: either way a live route log has a new row to show.
    return trigger_client_event(render(request, template, context), "routeLogged", {"route_id": route_id})
