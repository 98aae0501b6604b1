"""`manage.py load_demo_ticket`: the demo's example ticket, its comparison and a published proof.

Runs after `load_demo` (it needs the demo policy's classify-fast). It makes, once:

- a deterministic backend, keyword-triage-wide (a wider word list than keyword-triage), in the
  registry, recorded as a policy revision; it serves nothing until a reviewer approves it;
- ticket FOS-1, "Route triage through the keyword tool as fallback", with three acceptance
  criteria and five evaluation cases of classify-fast (one private);
- a proposal: keyword-triage-wide as the first fallback, ahead of the hosted model;
- a comparison of the active routes and the proposal, run here, in this process;
- three routed calls of classify-fast, so the route log has entries to sample;
- a proof of FOS-1 from all that, published at /proof/<slug>/.

Without Ollama or an OPENAI_API_KEY the model routes fail fast (connection refused; a secret
reference that does not resolve fails before any network call) and the keyword tools answer:
the honest demo. The local backend's timeout and the contract's 2 s latency budget bound every
call, so the command cannot hang. Nothing is made when FOS-1 exists, or without the demo policy.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from fos_console.celery import app as celery_app
from registry.models import Backend, Capability, Route
from registry.policy import record_revision
from routing import RouteFailed, comparisons, run
from routing.models import ComparisonRun, EvaluationCase
from tickets import proof, review
from tickets.models import AcceptanceCriterion, ProofArtifact, Ticket

KEY = "FOS-1"
CAPABILITY = "classify-fast"
BACKEND = "keyword-triage-wide"
BASELINE = "keyword-triage"
WIDE_CONFIG = {
    "labels": {
        "urgent": ["outage", "down", "urgent", "asap", "cannot log in", "can't log in", "data loss", "not working", "error 500"],
        "billing": ["invoice", "refund", "charge", "billing", "payment", "receipt", "subscription", "price", "vat"],
    },
    "default": "other",
}
CRITERIA = (
    ("verification_pass_rate", "at_least", "0.95", "every answer must be one of the three labels"),
    ("latency_p95_ms", "at_most", "200", "a fallback has to be quick to be worth having"),
    ("error_rate", "at_most", "0", ""),
)
CASES = (
    ("outage", "The site is down and customers cannot log in since 9:00.", "urgent", False),
    ("double charge", "I was charged twice this month, please refund the second payment.", "billing", False),
    ("invoice copy", "Could you send me a copy of last month's invoice?", "billing", False),
    ("feature question", "Do you have a dark mode?", "other", False),
    ("customer record", "Jane Roe (jane.roe@example.com, +44 20 7946 0958) says her subscription price went up.", "billing", True),
)
CALLS = ("Checkout is not working for anyone", "Where is my receipt for order 1182?", "Thanks for the quick help!")


class Command(BaseCommand):
    help = "Create the demo ticket FOS-1 with a comparison run and a published proof (once; needs load_demo first)."

    def handle(self, *args: Any, **options: Any) -> None:
        if Ticket.objects.filter(key=KEY).exists():
            self.stdout.write(f"ticket {KEY} already exists; nothing made")
            return
        capability = Capability.objects.filter(slug=CAPABILITY).first()
        if capability is None or not Route.objects.filter(capability=capability, backend__slug=BASELINE).exists():
            self.stdout.write(f"the demo policy is not loaded ({CAPABILITY} with {BASELINE}); run manage.py load_demo first")
            return
        operator = get_user_model().objects.filter(username="operator").first()
        ticket, proposal, cases = self._ticket(capability=capability, operator=operator)
        self.stdout.write(
            f"created ticket {KEY} with {ticket.criteria.count()} criteria, {len(cases)} evaluation cases "
            f"({sum(c.private for c in cases)} private) and a proposal: {BACKEND} at position {proposal.route.position}"
        )
        made = self._compare(ticket=ticket, proposal=proposal, cases=cases, operator=operator)
        self.stdout.write(f"comparison run {made.pk}: {made.status}")
        for summary in comparisons.summarize(made, list(made.results.all())):
            rate = summary.metrics["verification_pass_rate"]
            errors = ", ".join(f"{name} x{n}" for name, n in summary.errors_by_class.items()) or "no errors"
            shown = "n/a" if rate is None else f"{rate * 100:.0f}%"
            self.stdout.write(f"  {summary.backend} ({summary.role}): pass rate {shown}, {errors}")
        for text in CALLS:
            try:
                result = run(CAPABILITY, text, caller="demo")
                self.stdout.write(f"routed call: {result.outcome}, answered {result.output!r}")
            except RouteFailed as failed:
                self.stdout.write(f"routed call failed: {failed.error_class}")
        artifact = proof.make_proof(ticket=ticket, run=made, sample_size=len(CALLS), created_by=operator)
        proof.publish(proof=artifact)
        artifact = ProofArtifact.objects.get(pk=artifact.pk)
        total = artifact.content["redactions"]["total"]
        self.stdout.write(f"published proof {artifact.slug} at {artifact.public_url} ({total} redactions)")

    def _ticket(self, *, capability: Capability, operator: Any) -> tuple[Ticket, Any, list[EvaluationCase]]:
        with transaction.atomic():
            backend = Backend.objects.filter(slug=BACKEND).first()
            if backend is None:
                backend = Backend(
                    slug=BACKEND,
                    name="Keyword triage, wider word list (deterministic)",
                    adapter=Backend.Adapter.TOOL,
                    tool="keyword_classifier",
                    config=WIDE_CONFIG,
                    locality=Backend.Locality.LOCAL,
                )
                backend.full_clean()
                backend.save()
                record_revision(author="demo", summary=f"demo: backend {BACKEND} registered for {KEY}")
            ticket = Ticket.objects.create(
                key=KEY,
                title="Route triage through the keyword tool as fallback",
                capability=capability,
                description=(
                    "Without a local model or an API key, triage falls through the hosted model to the keyword tool. "
                    f"Put a wider keyword list ({BACKEND}) ahead of the hosted model as the first fallback, so a "
                    "failure stays local, free and fast.\nReported by ops@example.com."
                ),
                external_url="https://tracker.example.com/FOS-1",
                created_by=operator,
            )
            for metric, comparison, threshold, note in CRITERIA:
                AcceptanceCriterion.objects.create(
                    ticket=ticket, metric=metric, comparison=comparison, threshold=threshold, note=note
                )
            cases = [
                EvaluationCase.objects.create(
                    capability=capability, name=name, input=text, expected=expected, private=private, created_by=operator
                )
                for name, text, expected, private in CASES
            ]
            proposal = review.propose_route(
                ticket=ticket,
                backend=backend,
                position=1,
                displaced="shift",
                note="Keeps failures local before they reach the hosted model.",
                proposed_by=operator,
            )
        return ticket, proposal, cases

    def _compare(self, *, ticket: Ticket, proposal: Any, cases: list[EvaluationCase], operator: Any) -> ComparisonRun:
        routes = [*review.active_order(capability_id=ticket.capability_id), proposal.route]
        baseline = next(r for r in routes if r.backend.slug == BASELINE)
        # In this process, whatever the settings say: the proof below needs the finished run,
        # and a demo must not wait for a worker that may not be running.
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        try:
            made = comparisons.create_run(
                capability=ticket.capability,
                routes=routes,
                cases=cases,
                baseline=baseline,
                ticket_ref=ticket.key,
                created_by=operator,
            )
        finally:
            celery_app.conf.task_always_eager = eager
        made.refresh_from_db()
        if not made.is_finished:
            # The task did not run here (a queued delivery elsewhere holds no claim yet): run it now.
            comparisons.execute_run(run_id=made.pk)
            made.refresh_from_db()
        return made
