"""Forms for tickets. They clean and validate; the views apply the result (see tickets.review
and routing.comparisons)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from registry.models import Backend, Capability, Route
from routing.comparisons import MAX_ROUTES, MIN_ROUTES
from routing.models import ComparisonRun, EvaluationCase
from tickets.criteria import Verdict
from tickets.models import AcceptanceCriterion, ProofArtifact, RouteProposal, Ticket
from tickets.proof import MAX_SAMPLE
from tickets.review import active_order, evidence_problem, judge_run, order_after_approval


class TicketForm(forms.ModelForm):
    capability = forms.ModelChoiceField(queryset=Capability.objects.order_by("slug"), to_field_name="slug")
    # Declared for assume_scheme: "tracker.example.com/1" means https. The model's validator
    # still allows http and https only.
    external_url = forms.URLField(
        label="External URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://tracker.example.com/FOS-142"}),
        help_text="The issue in your tracker (http or https).",
    )

    class Meta:
        model = Ticket
        fields = ["key", "title", "capability", "description", "external_url", "commit_ref"]
        widgets = {
            "key": forms.TextInput(attrs={"placeholder": "FOS-142", "autocomplete": "off"}),
            "description": forms.Textarea(attrs={"rows": 4}),
        }
        help_texts = {"key": "Uppercase letters, a dash and digits, like FOS-142."}

    def clean_key(self) -> str:
        return self.cleaned_data["key"].strip()

    def clean_commit_ref(self) -> str:
        return self.cleaned_data["commit_ref"].strip()


class CriterionForm(forms.ModelForm):
    class Meta:
        model = AcceptanceCriterion
        fields = ["metric", "comparison", "threshold", "note"]
        help_texts = {"threshold": "Rates between 0 and 1 (0.95 for 95%), latency in ms, cost in USD."}


class EvaluationCaseForm(forms.ModelForm):
    class Meta:
        model = EvaluationCase
        fields = ["name", "input", "expected", "private"]
        widgets = {"input": forms.Textarea(attrs={"rows": 3}), "expected": forms.TextInput()}

    def clean_input(self) -> str:
        text = self.cleaned_data["input"]
        if not text.strip():
            raise ValidationError("the input must not be blank")
        return text


class ProposalForm(forms.Form):
    """A backend at a position of the ticket's capability. With `proposal`, an edit of it."""

    backend = forms.ModelChoiceField(queryset=Backend.objects.order_by("slug"), to_field_name="slug")
    position = forms.IntegerField(
        min_value=0, initial=0, help_text="0 makes it the primary; 1 the first fallback, and so on."
    )
    displaced = forms.ChoiceField(
        label="The route now at that place",
        choices=RouteProposal.Displaced.choices,
        initial=RouteProposal.Displaced.SHIFT,
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, ticket: Ticket, proposal: RouteProposal | None = None, **kwargs: Any) -> None:
        if proposal is not None:
            kwargs.setdefault(
                "initial",
                {"backend": proposal.route.backend.slug, "position": proposal.route.position, "displaced": proposal.displaced},
            )
        super().__init__(*args, **kwargs)
        self.ticket = ticket
        self.proposal = proposal
        if proposal is not None:
            del self.fields["note"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        backend, position = data.get("backend"), data.get("position")
        if backend is None or position is None:
            return data
        capability = self.ticket.capability
        others = [r for r in active_order(capability_id=capability.pk) if self.proposal is None or r.pk != self.proposal.route_id]
        if position > len(others):
            self.add_error("position", f"{capability.slug} has {len(others)} other active routes: the last place is {len(others)}")
        if any(r.backend_id == backend.pk for r in others):
            self.add_error("backend", f"{backend.slug} already serves {capability.slug}")
        # The registry's own rules (a hosted backend under a local_only contract, and so on).
        route = Route(capability=capability, backend=backend, position=position, status=Route.Status.PROPOSED)
        try:
            route.clean()
        except ValidationError as exc:
            for message in exc.message_dict.get("backend", exc.messages):
                self.add_error("backend", message)
        return data


class ComparisonForm(forms.Form):
    routes = forms.ModelMultipleChoiceField(
        queryset=Route.objects.none(), widget=forms.CheckboxSelectMultiple, help_text="Tried on every case, in this order."
    )
    baseline = forms.ModelChoiceField(
        queryset=Route.objects.none(),
        required=False,
        empty_label="the current primary",
        help_text="Agreement is measured against this route's answers.",
    )

    def __init__(self, *args: Any, ticket: Ticket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket = ticket
        candidates = comparison_candidates(ticket)
        self.fields["routes"].queryset = Route.objects.filter(pk__in=[r.pk for r in candidates])
        self.fields["routes"].label_from_instance = route_label
        self.fields["baseline"].queryset = self.fields["routes"].queryset
        self.fields["baseline"].label_from_instance = route_label
        self.candidates = candidates
        if not self.is_bound:
            self.initial.setdefault("routes", [r.pk for r in candidates])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        routes = data.get("routes")
        if routes is not None:
            if not MIN_ROUTES <= len(routes) <= MAX_ROUTES:
                self.add_error("routes", f"choose between {MIN_ROUTES} and {MAX_ROUTES} routes")
            else:
                # The order shown: active routes by position, then the proposals.
                rank = {r.pk: i for i, r in enumerate(self.candidates)}
                data["routes"] = sorted(routes, key=lambda r: rank[r.pk])
        baseline = data.get("baseline")
        if baseline is not None and routes is not None and baseline not in routes:
            self.add_error("baseline", "the baseline must be one of the compared routes")
        if not EvaluationCase.objects.filter(capability=self.ticket.capability).exists():
            raise ValidationError(f"{self.ticket.capability.slug} has no evaluation cases yet: add one first")
        return data


def comparison_candidates(ticket: Ticket) -> list[Route]:
    """The routes a ticket's comparison may include: the capability's active routes, in order,
    then the routes proposed under the ticket that are still awaiting a decision."""
    active = active_order(capability_id=ticket.capability_id)
    proposed = list(
        Route.objects.filter(proposal__ticket=ticket, status=Route.Status.PROPOSED).select_related("backend").order_by("id")
    )
    return active + proposed


def route_label(route: Route) -> str:
    if route.status == Route.Status.ACTIVE:
        return f"{route.backend.slug} (active, position {route.position})"
    return f"{route.backend.slug} ({route.status}, for position {route.position})"


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.RadioSelect, initial="approve"
    )
    comparison_run = forms.ModelChoiceField(
        label="Evidence: comparison run", queryset=ComparisonRun.objects.none(), required=False
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    override_reason = forms.CharField(
        label="Override reason",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only to approve a route whose run does not meet every criterion. Shown on the ticket.",
    )

    def __init__(self, *args: Any, ticket: Ticket, proposal: RouteProposal, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket = ticket
        self.proposal = proposal
        self.verdict: Verdict | None = None
        runs = ComparisonRun.objects.filter(ticket_ref=ticket.key, capability=ticket.capability).order_by("-created_at", "-id")
        self.fields["comparison_run"].queryset = runs
        self.fields["comparison_run"].label_from_instance = lambda run: f"run {run.pk} ({run.status}, {run.created_at:%Y-%m-%d %H:%M})"
        latest = next((run for run in runs if proposal.route_id in run.route_ids and run.status == ComparisonRun.Status.DONE), None)
        if latest is not None and not self.is_bound:
            self.initial.setdefault("comparison_run", latest.pk)
            # Shown beside the choice, so the reviewer sees the verdict before deciding.
            self.verdict = judge_run(ticket=ticket, proposal=proposal, run=latest)

    def clean_comment(self) -> str:
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise ValidationError("say why")
        return comment

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        decision, run = data.get("decision"), data.get("comparison_run")
        if run is not None:
            problem = evidence_problem(ticket=self.ticket, proposal=self.proposal, run=run)
            if problem:
                self.add_error("comparison_run", problem)
                return data
            self.verdict = judge_run(ticket=self.ticket, proposal=self.proposal, run=run)
        if decision != "approve":
            return data
        if run is None:
            self.add_error("comparison_run", "an approval cites the comparison run it rests on")
        elif self.verdict is not None and not self.verdict.met and not data.get("override_reason", "").strip():
            self.add_error("override_reason", f"the run {self.verdict.summary}: give a reason to approve anyway, or reject")
        return data

    def order_after(self) -> list[Route]:
        """The active routes as they would stand after an approval, for the reviewer to see."""
        order, _ = order_after_approval(
            active=active_order(capability_id=self.ticket.capability_id), route=self.proposal.route, displaced=self.proposal.displaced
        )
        return order


class ProofForm(forms.Form):
    """What a proof is made from: one of the ticket's finished runs and a route log sample."""

    comparison_run = forms.ModelChoiceField(label="Comparison run", queryset=ComparisonRun.objects.none(), empty_label=None)
    sample_size = forms.IntegerField(
        label="Route log entries",
        min_value=0,
        max_value=MAX_SAMPLE,
        initial=5,
        help_text=f"The capability's most recent entries, 0 to {MAX_SAMPLE}.",
    )
    sample_outcome = forms.ChoiceField(
        label="Of outcome", choices=ProofArtifact.SampleOutcome.choices, initial=ProofArtifact.SampleOutcome.ANY, required=False
    )

    def __init__(self, *args: Any, ticket: Ticket, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only done runs: a cancelled or failed run is partial evidence, not a proof.
        runs = ComparisonRun.objects.filter(
            ticket_ref=ticket.key, capability=ticket.capability, status=ComparisonRun.Status.DONE
        ).order_by("-created_at", "-id")
        self.fields["comparison_run"].queryset = runs
        self.fields["comparison_run"].label_from_instance = lambda run: f"run {run.pk} ({run.created_at:%Y-%m-%d %H:%M})"
        latest = runs.first()
        self.has_runs = latest is not None
        if latest is not None and not self.is_bound:
            self.initial.setdefault("comparison_run", latest.pk)

    def clean_sample_outcome(self) -> str:
        return self.cleaned_data.get("sample_outcome") or ProofArtifact.SampleOutcome.ANY
