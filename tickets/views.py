"""Console pages for tickets, their proposals and reviews, and comparison runs.

Everyone signed in may look. Operators create tickets, criteria, evaluation cases and
proposals, and start, cancel or resume comparison runs; reviewers approve or reject proposals
(never their own). Each action is offered only to the role that may take it, and refused
(403) to anyone else. An HTMX request gets the re-rendered region (plus a `ticketChanged`
event naming it, for the other regions), a plain request a redirect.

Proofs: operators make one from the ticket page and publish or unpublish it; everyone signed
in may preview and export it. Once published, `/proof/<slug>/` and its exports
(`proof.html`, `proof.md`, `proof.json` beside it) answer anyone, signed in or not; they are
rendered from the proof's frozen content alone, without a request context, so nothing from the
console or the session (navigation, CSRF token, user) can reach them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import trigger_client_event

from fos_console.htmx import HtmxHttpRequest, fragment_target, wants_fragment
from registry.models import Route
from registry.roles import is_operator, is_reviewer
from routing import comparisons
from routing.comparison_charts import comparison_charts
from routing.models import ComparisonResult, ComparisonRun, EvaluationCase
from tickets import proof as proofs
from tickets import proof_export
from tickets import review as reviews
from tickets.criteria import judge
from tickets.forms import (
    ComparisonForm,
    CriterionForm,
    EvaluationCaseForm,
    ProofForm,
    ProposalForm,
    ReviewForm,
    TicketForm,
)
from tickets.models import ProofArtifact, Review, Ticket

DETAIL_PAGE = "tickets/ticket_detail.html"
# Regions of the ticket page an HTMX request may ask for by its HX-Target.
DETAIL_FRAGMENTS = ("ticket-head", "criteria", "cases", "proposals", "runs", "reviews", "proofs")
OPERATE, REVIEW = "operate", "review"


def _get_ticket_for_user(request: HtmxHttpRequest, key: str, *, action: str = "") -> Ticket:
    """The ticket named by `key` (404 if none); an action only for the role that may take it (403)."""
    ticket = get_object_or_404(Ticket.objects.select_related("capability", "created_by"), key=key)
    if action == OPERATE and not is_operator(request.user):
        raise PermissionDenied("Only operators change tickets, proposals and comparison runs.")
    if action == REVIEW and not is_reviewer(request.user):
        raise PermissionDenied("Only reviewers approve or reject proposals.")
    return ticket


def _get_proof_for_user(request: HtmxHttpRequest, slug: str, *, action: str = "", published_only: bool = False) -> ProofArtifact:
    """The proof named by `slug` (404 if none, or if `published_only` and it is not published);
    publishing and unpublishing only for operators (403)."""
    candidates = ProofArtifact.objects.select_related("ticket", "created_by")
    if published_only:
        candidates = candidates.filter(published_at__isnull=False)
    proof = get_object_or_404(candidates, slug=slug)
    if action == OPERATE and not is_operator(request.user):
        raise PermissionDenied("Only operators publish or unpublish proofs.")
    return proof


def _get_run_for_user(request: HtmxHttpRequest, run_id: int, *, action: str = "") -> ComparisonRun:
    run = get_object_or_404(ComparisonRun.objects.select_related("capability", "baseline_route"), pk=run_id)
    if action == OPERATE and not is_operator(request.user):
        raise PermissionDenied("Only operators cancel or resume comparison runs.")
    return run


# --- the ticket list ----------------------------------------------------------------------------


@login_required
@require_GET
@vary_on_headers("HX-Request")
def ticket_list(request: HtmxHttpRequest) -> HttpResponse:
    return _render_list(request, form=TicketForm() if is_operator(request.user) else None)


@login_required
@require_POST
def ticket_create(request: HtmxHttpRequest) -> HttpResponse:
    if not is_operator(request.user):
        raise PermissionDenied("Only operators create tickets.")
    form = TicketForm(request.POST)
    if not form.is_valid():
        return _render_list(request, form=form, fragment="new-ticket", status=200 if request.htmx else 400)
    ticket = form.save(commit=False)
    ticket.created_by = request.user
    ticket.save()
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = ticket.get_absolute_url()
        return response
    messages.success(request, f"Ticket {ticket.key} created.")
    return redirect(ticket)


def _render_list(request: HtmxHttpRequest, *, form: TicketForm | None, fragment: str = "", status: int = 200) -> HttpResponse:
    tickets = (
        Ticket.objects.select_related("capability")
        .annotate(
            proposal_count=Count("proposals", distinct=True),
            pending_count=Count("proposals", filter=Q(proposals__route__status=Route.Status.PROPOSED), distinct=True),
        )
        .order_by("-created_at", "-id")
    )
    if not fragment and wants_fragment(request):
        fragment = "ticket-table"
    template = "tickets/ticket_list.html" + (f"#{fragment}" if fragment and request.htmx else "")
    return render(request, template, {"tickets": tickets, "form": form}, status=status)


# --- one ticket ---------------------------------------------------------------------------------


@login_required
@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def ticket_detail(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key)
    return _render_ticket(request, ticket, fragment=fragment_target(request, DETAIL_FRAGMENTS))


@login_required
@require_POST
def criterion_add(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    form = CriterionForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, "criteria", criterion_form=form)
    criterion = form.save(commit=False)
    criterion.ticket = ticket
    criterion.save()
    return _after_change(request, ticket, fragment="criteria", note=f"Criterion added: {criterion}.")


@login_required
@require_POST
def case_add(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    form = EvaluationCaseForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, "cases", case_form=form)
    case = form.save(commit=False)
    case.capability, case.created_by = ticket.capability, request.user
    case.save()
    return _after_change(request, ticket, fragment="cases", note=f"Evaluation case added to {ticket.capability.slug}.")


@login_required
@require_POST
def proposal_add(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    form = ProposalForm(request.POST, ticket=ticket)
    if not form.is_valid():
        return _invalid(request, ticket, "proposals", proposal_form=form)
    data = form.cleaned_data
    proposal = reviews.propose_route(
        ticket=ticket,
        backend=data["backend"],
        position=data["position"],
        displaced=data["displaced"],
        note=data["note"],
        proposed_by=request.user,
    )
    note = f"Proposed {proposal.route.backend.slug} at position {proposal.route.position}: awaiting review."
    return _after_change(request, ticket, fragment="proposals", note=note)


@login_required
@require_POST
def proposal_edit(request: HtmxHttpRequest, key: str, proposal_id: int) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    proposal = get_object_or_404(ticket.proposals.select_related("route__backend"), pk=proposal_id)
    form = ProposalForm(request.POST, ticket=ticket, proposal=proposal)
    if not form.is_valid():
        return _invalid(request, ticket, "proposals", edit_forms={proposal.pk: form})
    data = form.cleaned_data
    try:
        outcome = reviews.edit_proposal(
            proposal=proposal,
            backend=data["backend"],
            position=data["position"],
            displaced=data["displaced"],
            author=request.user.get_username(),
        )
    except reviews.ReviewError as exc:
        return _invalid(request, ticket, "proposals", proposals_error=str(exc))
    return _after_change(request, ticket, fragment="proposals", note=outcome.summary + ".")


@login_required
@require_POST
def proposal_review(request: HtmxHttpRequest, key: str, proposal_id: int) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=REVIEW)
    proposal = get_object_or_404(ticket.proposals.select_related("route__backend", "route__proposed_by"), pk=proposal_id)
    try:
        reviews.check_reviewer(proposal=proposal, reviewer=request.user)
    except reviews.OwnProposal as exc:
        # Refused, and said why: the page never offers this, so only a crafted request gets here.
        return _render_ticket(request, ticket, fragment="proposals", status=403, proposals_error=str(exc))
    form = ReviewForm(request.POST, ticket=ticket, proposal=proposal)
    if not form.is_valid():
        return _invalid(request, ticket, "proposals", review_forms={proposal.pk: form})
    data = form.cleaned_data
    try:
        if data["decision"] == "approve":
            reviews.approve(
                proposal=proposal,
                reviewer=request.user,
                comment=data["comment"],
                run=data["comparison_run"],
                override_reason=data["override_reason"],
            )
            note = f"Approved: {proposal.route.backend.slug} now serves {ticket.capability.slug}."
        else:
            reviews.reject(proposal=proposal, reviewer=request.user, comment=data["comment"], run=data["comparison_run"])
            note = f"Rejected: {proposal.route.backend.slug} will not serve {ticket.capability.slug}."
    except reviews.ReviewError as exc:
        return _invalid(request, ticket, "proposals", proposals_error=str(exc))
    return _after_change(request, ticket, fragment="proposals", note=note)


@login_required
@require_POST
def comparison_start(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    form = ComparisonForm(request.POST, ticket=ticket)
    if not form.is_valid():
        return _invalid(request, ticket, "runs", comparison_form=form)
    with transaction.atomic():
        try:
            run = comparisons.create_run(
                capability=ticket.capability,
                routes=form.cleaned_data["routes"],
                cases=list(EvaluationCase.objects.filter(capability=ticket.capability).order_by("id")),
                baseline=form.cleaned_data["baseline"],
                ticket_ref=ticket.key,
                created_by=request.user,
            )
        except comparisons.ComparisonError as exc:
            form.add_error(None, str(exc))
            return _invalid(request, ticket, "runs", comparison_form=form)
    # The task is queued when the transaction commits; on the embedded default it has run by now.
    if not request.htmx:
        messages.success(request, f"Comparison run {run.pk} started.")
        return redirect("tickets:comparison", run_id=run.pk)
    return _after_change(request, ticket, fragment="runs", note=f"Comparison run {run.pk} started.")


def _proposal_rows(request: HtmxHttpRequest, ticket: Ticket, extra: dict[str, Any]) -> list[dict[str, Any]]:
    operator, reviewer = is_operator(request.user), is_reviewer(request.user)
    edit_forms = extra.pop("edit_forms", {})
    review_forms = extra.pop("review_forms", {})
    proposals = ticket.proposals.select_related("route__backend", "route__proposed_by", "route__approved_by").prefetch_related(
        Prefetch("reviews", queryset=Review.objects.select_related("reviewer"))
    )
    rows = []
    for proposal in proposals.order_by("id"):
        route = proposal.route
        own = route.proposed_by_id == request.user.pk
        pending = route.status == Route.Status.PROPOSED
        row: dict[str, Any] = {"proposal": proposal, "route": route, "own": own}
        if operator and route.status in (Route.Status.PROPOSED, Route.Status.ACTIVE):
            row["edit_form"] = edit_forms.get(proposal.pk) or ProposalForm(ticket=ticket, proposal=proposal, auto_id=f"id_edit{proposal.pk}_%s")
        if reviewer and pending and not own:
            form = review_forms.get(proposal.pk) or ReviewForm(ticket=ticket, proposal=proposal, auto_id=f"id_review{proposal.pk}_%s")
            row["review_form"] = form
            row["order_after"] = form.order_after()
        rows.append(row)
    return rows


def _render_ticket(
    request: HtmxHttpRequest, ticket: Ticket, *, fragment: str | None, status: int = 200, **extra: Any
) -> HttpResponse:
    operator = is_operator(request.user)
    runs = list(ComparisonRun.objects.filter(ticket_ref=ticket.key).order_by("-created_at", "-id"))
    done = dict(
        ComparisonResult.objects.filter(run__in=runs).values_list("run_id").annotate(n=Count("id")).values_list("run_id", "n")
    )
    context: dict[str, Any] = {
        "ticket": ticket,
        "criteria": list(ticket.criteria.all()),
        "cases": list(EvaluationCase.objects.filter(capability=ticket.capability).order_by("id")),
        "runs": [
            {
                "run": run,
                "progress": comparisons.Progress(done.get(run.pk, 0), run.cells_total),
                "can_resume": comparisons.can_resume(run),
                "stale": comparisons.is_stale(run),
            }
            for run in runs
        ],
        "reviews": ticket.reviews.select_related("reviewer", "proposal__route__backend", "comparison_run"),
        "criterion_form": CriterionForm() if operator else None,
        "case_form": EvaluationCaseForm() if operator else None,
        "proposal_form": ProposalForm(ticket=ticket) if operator else None,
        "comparison_form": ComparisonForm(ticket=ticket) if operator else None,
        "proofs": list(ticket.proofs.select_related("created_by").order_by("-created_at", "-id")),
        "proof_form": ProofForm(ticket=ticket) if operator else None,
    }
    context.update({k: v for k, v in extra.items() if k not in ("edit_forms", "review_forms")})
    context["proposal_rows"] = _proposal_rows(request, ticket, extra)
    template = DETAIL_PAGE + (f"#{fragment}" if fragment and request.htmx else "")
    return render(request, template, context, status=status)


def _invalid(request: HtmxHttpRequest, ticket: Ticket, fragment: str, **extra: Any) -> HttpResponse:
    # htmx swaps only 2xx answers by default, so the fragment with its errors comes back as 200.
    return _render_ticket(request, ticket, fragment=fragment, status=200 if request.htmx else 400, **extra)


def _after_change(request: HtmxHttpRequest, ticket: Ticket, *, fragment: str, note: str) -> HttpResponse:
    if not request.htmx:
        messages.success(request, note)
        return redirect(reverse("tickets:detail", kwargs={"key": ticket.key}) + f"#{fragment}")
    ticket.refresh_from_db()
    response = _render_ticket(request, ticket, fragment=fragment, **{f"{fragment}_note": note})
    # The other regions refresh themselves; the one just re-rendered ignores its own event.
    trigger_client_event(response, "ticketChanged", {"source": fragment})
    return response


# --- comparison runs ----------------------------------------------------------------------------


@login_required
@require_GET
@vary_on_headers("HX-Request", "HX-Target")
def comparison_detail(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    ticket = Ticket.objects.filter(key=run.ticket_ref).first() if run.ticket_ref else None
    results = list(ComparisonResult.objects.filter(run=run))
    cases = list(run.cases.order_by("id"))
    summaries = comparisons.summarize(run, results)
    criteria = list(ticket.criteria.all()) if ticket else []
    verdicts = [(summary, judge(criteria, summary)) for summary in summaries] if criteria else []
    context = {
        "run": run,
        "ticket": ticket,
        "progress": comparisons.Progress(len(results), run.cells_total),
        "can_resume": comparisons.can_resume(run),
        "stale": comparisons.is_stale(run),
        "summaries": summaries,
        "verdicts": verdicts,
        # One row per criterion, one judged cell per route.
        "criteria_rows": [
            (criterion, [(summary, verdict.results[index]) for summary, verdict in verdicts])
            for index, criterion in enumerate(criteria)
        ],
        "charts": comparison_charts(summaries),
        "rows": comparisons.grid(run, results, cases),
        "lanes": run.routes,
    }
    fragment = wants_fragment(request) and request.htmx.target == "comparison-live"
    template = "tickets/comparison.html" + ("#comparison-live" if fragment else "")
    return render(request, template, context)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def comparison_progress(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    if not wants_fragment(request):
        return redirect("tickets:comparison", run_id=run.pk)
    return _render_progress(request, run)


@login_required
@require_POST
def comparison_cancel(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id, action=OPERATE)
    cancelled = comparisons.cancel_run(run_id=run.pk)
    note = "Cancelled: the cells in flight finish, no other starts." if cancelled else f"The run is {run.status}: nothing to cancel."
    return _after_run_change(request, run, note=note)


@login_required
@require_POST
def comparison_resume(request: HtmxHttpRequest, run_id: int) -> HttpResponse:
    run = _get_run_for_user(request, run_id, action=OPERATE)
    resumed = comparisons.resume_run(run=run)
    note = "Resumed: the cells without a result are queued." if resumed else f"The run is {run.status}: it cannot be resumed now."
    return _after_run_change(request, run, note=note)


def _render_progress(request: HtmxHttpRequest, run: ComparisonRun, *, note: str = "", changed: bool = False) -> HttpResponse:
    run.refresh_from_db()
    context = {
        "run": run,
        "progress": comparisons.progress(run),
        "can_resume": comparisons.can_resume(run),
        "stale": comparisons.is_stale(run),
        "poll": True,
        "progress_note": note,
    }
    response = render(request, "tickets/_run_progress.html", context)
    if changed or run.is_finished:
        # The regions that show the run's outcome refresh (a finished run stops polling, so
        # this is sent once per change).
        trigger_client_event(response, "runChanged", {"source": "progress"})
        trigger_client_event(response, "ticketChanged", {"source": "progress"})
    return response


def _after_run_change(request: HtmxHttpRequest, run: ComparisonRun, *, note: str) -> HttpResponse:
    if not request.htmx:
        messages.success(request, note)
        return redirect("tickets:comparison", run_id=run.pk)
    return _render_progress(request, run, note=note, changed=True)


# --- proofs -------------------------------------------------------------------------------------

EXPORT_FORMATS = (("html", "HTML file"), ("md", "Markdown"), ("json", "JSON"))
# The public page and the exports need no script, no frame and no form: a policy that allows
# none keeps even a markup slip in a proof from running anything.
PROOF_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@login_required
@require_POST
def proof_create(request: HtmxHttpRequest, key: str) -> HttpResponse:
    ticket = _get_ticket_for_user(request, key, action=OPERATE)
    form = ProofForm(request.POST, ticket=ticket)
    if not form.is_valid():
        return _invalid(request, ticket, "proofs", proof_form=form)
    data = form.cleaned_data
    try:
        artifact = proofs.make_proof(
            ticket=ticket,
            run=data["comparison_run"],
            sample_size=data["sample_size"],
            sample_outcome=data["sample_outcome"],
            created_by=request.user,
        )
    except proofs.ProofError as exc:
        form.add_error(None, str(exc))
        return _invalid(request, ticket, "proofs", proof_form=form)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = artifact.get_absolute_url()
        return response
    messages.success(request, f"Proof {artifact.slug} made: check the preview, then publish it.")
    return redirect(artifact)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def proof_preview(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    artifact = _get_proof_for_user(request, slug)
    return _render_proof(request, artifact, fragment=wants_fragment(request))


@login_required
@require_POST
def proof_publish(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    artifact = _get_proof_for_user(request, slug, action=OPERATE)
    changed = proofs.publish(proof=artifact)
    note = f"Published at {artifact.public_url}." if changed else "It was already published."
    return _after_proof_change(request, artifact, note=note)


@login_required
@require_POST
def proof_unpublish(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    artifact = _get_proof_for_user(request, slug, action=OPERATE)
    changed = proofs.unpublish(proof=artifact)
    note = f"Unpublished: {artifact.public_url} now answers 404." if changed else "It was not published."
    return _after_proof_change(request, artifact, note=note)


@login_required
@require_GET
def proof_export_view(request: HtmxHttpRequest, slug: str, fmt: str) -> HttpResponse:
    return _export(_get_proof_for_user(request, slug), fmt)


# No login: these answer anyone once the proof is published, and 404 before and after.
# never_cache, so that an unpublished proof is not served on from a cache.
@require_GET
@never_cache
def proof_public(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    artifact = _get_proof_for_user(request, slug, published_only=True)
    return _hardened(HttpResponse(proof_export.render_html(artifact.content, downloads=True)))


@require_GET
@never_cache
def proof_public_export(request: HtmxHttpRequest, slug: str, fmt: str) -> HttpResponse:
    return _export(_get_proof_for_user(request, slug, published_only=True), fmt)


def _render_proof(request: HtmxHttpRequest, artifact: ProofArtifact, *, fragment: bool, note: str = "") -> HttpResponse:
    context = {
        "artifact": artifact,
        "export_formats": EXPORT_FORMATS,
        "controls_note": note,
        **proof_export.context(artifact.content),
    }
    return render(request, "tickets/proof_preview.html" + ("#proof-controls" if fragment else ""), context)


def _after_proof_change(request: HtmxHttpRequest, artifact: ProofArtifact, *, note: str) -> HttpResponse:
    if not request.htmx:
        messages.success(request, note)
        return redirect(artifact)
    artifact.refresh_from_db()
    response = _render_proof(request, artifact, fragment=True, note=note)
    trigger_client_event(response, "ticketChanged", {"source": "proof-controls"})
    return response


def _export(artifact: ProofArtifact, fmt: str) -> HttpResponse:
    kind = proof_export.FORMATS.get(fmt)
    if kind is None:
        raise Http404("no such export format")
    response = HttpResponse(proof_export.render(artifact.content, fmt), content_type=kind.content_type)
    response["Content-Disposition"] = f'attachment; filename="proof-{artifact.slug}.{kind.extension}"'
    return _hardened(response)


def _hardened(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = PROOF_CSP
    # A click on the commit link must not tell the commit's host where the proof lives.
    response["Referrer-Policy"] = "no-referrer"
    return response
