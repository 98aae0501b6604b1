"""`manage.py load_demo_ticket`: the demo ticket, its comparison and its published proof.

The demo policy's model backends point at a local Ollama (nothing listens on its port here) and
at OpenAI with a key from OPENAI_API_KEY (unset here), so both fail fast and the keyword tools
answer: what a newcomer without a model or a key sees.
"""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.test import Client

from registry.models import Backend, Route
from routing.models import ComparisonRun, EvaluationCase, RouteLog
from tests.tickets.test_proof import validate
from tickets.models import ProofArtifact, Ticket

pytestmark = pytest.mark.django_db


def command(name: str) -> str:
    out = io.StringIO()
    call_command(name, stdout=out)
    return out.getvalue()


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_it_needs_the_demo_policy(no_keys: None) -> None:
    assert "run manage.py load_demo first" in command("load_demo_ticket")
    assert not Ticket.objects.exists() and not ProofArtifact.objects.exists()


def test_it_makes_the_demo_ticket_comparison_and_published_proof_once(no_keys: None, eager_celery: None) -> None:
    command("load_demo")
    started = time.monotonic()
    out = command("load_demo_ticket")
    assert time.monotonic() - started < 30, "the demo must not wait on unreachable backends"

    ticket = Ticket.objects.get(key="FOS-1")
    assert ticket.capability.slug == "classify-fast" and ticket.criteria.count() == 3
    cases = EvaluationCase.objects.filter(capability=ticket.capability)
    assert cases.count() == 5 and cases.filter(private=True).count() == 1
    proposed = Route.objects.get(proposal__ticket=ticket)
    assert (proposed.backend.slug, proposed.status) == ("keyword-triage-wide", "proposed")
    run = ComparisonRun.objects.get(ticket_ref="FOS-1")
    assert run.status == "done" and run.cells_total == 20
    assert RouteLog.objects.filter(capability="classify-fast").count() == 3

    proof = ProofArtifact.objects.get(ticket=ticket)
    assert proof.is_published
    validate(proof.content)
    routes = {r["backend"]: r for r in proof.content["comparison"]["routes"]}
    assert routes["keyword-triage-wide"]["metrics"]["verification_pass_rate"] == 1.0
    assert routes["local-llama"]["errors_by_class"] and routes["openai-mini"]["errors_by_class"] == {"auth": 4}
    assert proof.content["redactions"]["by_kind"]["secret_reference"] >= 1  # env:OPENAI_API_KEY, named in reasons
    page = Client().get(f"/proof/{proof.slug}/").content.decode()
    assert "Route triage through the keyword tool as fallback" in page and "OPENAI_API_KEY" not in page
    assert f"published proof {proof.slug} at /proof/{proof.slug}/" in out and "comparison run" in out

    before = (Ticket.objects.count(), ProofArtifact.objects.count(), ComparisonRun.objects.count(), RouteLog.objects.count(),
              Backend.objects.count(), EvaluationCase.objects.count())  # fmt: skip
    assert "already exists; nothing made" in command("load_demo_ticket")
    after = (Ticket.objects.count(), ProofArtifact.objects.count(), ComparisonRun.objects.count(), RouteLog.objects.count(),
             Backend.objects.count(), EvaluationCase.objects.count())  # fmt: skip
    assert after == before


def test_it_runs_the_comparison_in_process_even_when_tasks_are_queued(no_keys: None) -> None:
    from fos_console.celery import app as celery_app

    command("load_demo")
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        command("load_demo_ticket")
    finally:
        celery_app.conf.task_always_eager = previous
    assert ComparisonRun.objects.get().status == "done" and ProofArtifact.objects.get().is_published
