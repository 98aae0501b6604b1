"""Building proofs (tickets.proof) and rendering them (tickets.proof_export): what goes in, what
stays out, that a proof is frozen, and that its JSON keeps to its schema."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from registry.models import Capability
from routing import RouteFailed, run
from routing.models import Attempt, ComparisonResult, ComparisonRun, EvaluationCase, RouteLog
from tests.tickets.conftest import backend, finished_run
from tickets import proof_export, review
from tickets.models import ProofArtifact, RouteProposal, Ticket
from tickets.proof import MAX_SAMPLE, ProofError, build_content, make_proof, sample_route_logs

pytestmark = pytest.mark.django_db

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "tickets" / "proof_schema.json").read_text(encoding="utf-8"))


def validate(content: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(content)


@pytest.fixture
def proposal(ticket: Ticket, operator: Any) -> RouteProposal:
    return review.propose_route(
        ticket=ticket, backend=backend("candidate"), position=0, displaced="shift", note="try it", proposed_by=operator
    )


@pytest.fixture
def evidence(ticket: Ticket, proposal: RouteProposal, cases: list[EvaluationCase], criteria: Any) -> ComparisonRun:
    routes = [*ticket.capability.routes.filter(status="active").order_by("position"), proposal.route]
    return finished_run(ticket, routes, cases)


@pytest.fixture
def approved(proposal: RouteProposal, evidence: ComparisonRun, reviewer: Any) -> ComparisonRun:
    review.approve(proposal=proposal, reviewer=reviewer, comment="meets the bar", run=evidence)
    return evidence


@pytest.fixture
def traffic(policy: Capability) -> list[int]:
    """A few routed calls of classify-fast, so there are route logs to sample."""
    ids = []
    for text in ("the invoice is wrong", "refund please", "site down"):
        try:
            ids.append(run("classify-fast", text, caller="billing-app").route_id)
        except RouteFailed as failed:
            ids.append(failed.route_id)
    return ids


@pytest.fixture
def proof(ticket: Ticket, approved: ComparisonRun, traffic: list[int], operator: Any) -> ProofArtifact:
    return make_proof(ticket=ticket, run=approved, sample_size=5, created_by=operator)


def test_it_makes_a_proof_with_a_slug_from_the_ticket_key(proof: ProofArtifact, operator: Any) -> None:
    assert re.fullmatch(r"fos-142-[a-z2-9]{8}", proof.slug)
    assert (proof.created_by, proof.published_at, proof.schema_version) == (operator, None, 1)
    assert proof.content["slug"] == proof.slug and proof.content["schema_version"] == 1
    assert proof.redaction_counts == proof.content["redactions"]["by_kind"]


def test_it_validates_against_its_json_schema(proof: ProofArtifact) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validate(proof.content)
    validate(json.loads(proof_export.render_json(proof.content)))
    assert SCHEMA["properties"]["schema_version"] == {"const": 1}


def test_the_schema_refuses_a_field_outside_the_allow_list(proof: ProofArtifact) -> None:
    content = json.loads(json.dumps(proof.content))
    content["route_log_sample"]["entries"][0]["input_preview"] = "hello"
    with pytest.raises(jsonschema.ValidationError):
        validate(content)


def test_it_holds_the_contract_routes_criteria_decision_and_sample(proof: ProofArtifact) -> None:
    content = proof.content
    assert content["ticket"] == {
        "key": "FOS-142",
        "title": "Cheaper classification",
        "description": "Try the candidate model as primary.",
        "status": "accepted",
        "commit": {"text": "0123abcd", "url": None},
    }
    contract = content["capability"]
    assert (contract["slug"], contract["intent"], contract["privacy"], contract["fallback"]) == (
        "classify-fast", "classification", "hosted_allowed", "next_route"
    )  # fmt: skip
    assert contract["verify"] == {"kind": "one_of", "detail": "one of: urgent, billing, other"}
    routes = content["comparison"]["routes"]
    assert [r["backend"] for r in routes] == ["spark", "triage", "candidate"]
    assert routes[2]["metrics"]["verification_pass_rate"] == 1.0 and routes[2]["role"] == "proposed"
    assert routes[1]["inspectability"]["level"] == "full"
    assert [c["label"] for c in content["comparison"]["cases"]] == ["case 1", "case 2", "case 3"]
    assert [len(c["results"]) for c in content["criteria"]] == [3, 3]
    assert [v["met"] for v in content["verdicts"]] == [True, True, True]
    [decision] = content["decisions"]
    assert (decision["decision"], decision["backend"], decision["reviewer"], decision["evidence"]) == (
        "approved", "candidate", "rita-reviewer", "this comparison"
    )  # fmt: skip
    sample = content["route_log_sample"]
    assert sample["size"] == 3 and sample["outcome"] == "any"
    entry = sample["entries"][0]
    assert entry["intent"] == "classification" and entry["backend"] == "candidate"
    assert len(entry["input_sha256"]) == 64 and entry["input_chars"] == len("site down")


def test_it_shows_inputs_only_as_hash_and_length_and_withholds_private_outputs(proof: ProofArtifact, cases: Any) -> None:
    rows = proof.content["comparison"]["cases"]
    assert rows[0]["input_chars"] == len("the invoice is wrong") and rows[0]["name"] == "invoice"
    private = rows[2]
    assert private["private"] is True and private["name"] is None and private["expected"] is None
    assert all(cell["output"] is None for cell in private["cells"])
    assert [cell["output_withheld"] for cell in private["cells"]] == [True, True, True]
    assert proof.content["redactions"]["withheld"] == {"case_inputs": 3, "private_case_outputs": 3}
    text = json.dumps(proof.content)
    assert "the invoice is wrong" not in text and "my invoice, account 42" not in text
    assert "private case: output withheld" in proof_export.render_html(proof.content)


def test_it_carries_no_internal_ids(proof: ProofArtifact, traffic: list[int]) -> None:
    def keys(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [*value, *(k for v in value.values() for k in keys(v))]
        if isinstance(value, list):
            return [k for v in value for k in keys(v)]
        return []

    assert not [k for k in keys(proof.content) if k in ("id", "pk") or k.endswith("_id")]
    text = json.dumps(proof.content)
    assert "olivia-operator" not in text and "billing-app" not in text


def test_it_leaves_private_instructions_out(ticket: Ticket, approved: ComparisonRun) -> None:
    # Marked private after the run: still withheld, though the run's contract predates it.
    Capability.objects.filter(pk=ticket.capability_id).update(instructions="SECRET-STEPS", instructions_private=True)
    ComparisonRun.objects.filter(pk=approved.pk).update(contract={**approved.contract, "instructions": "SECRET-STEPS"})
    approved.refresh_from_db()
    content = make_proof(ticket=ticket, run=approved, sample_size=0).content
    assert content["capability"]["instructions"] is None and content["capability"]["instructions_withheld"] is True
    assert "SECRET-STEPS" not in json.dumps(content) and content["redactions"]["withheld"]["instructions"] == 1
    ComparisonRun.objects.filter(pk=approved.pk).update(contract={**approved.contract, "instructions": "Say hello to ops@example.com"})
    Capability.objects.filter(pk=ticket.capability_id).update(instructions_private=False)
    approved.refresh_from_db()
    contract = make_proof(ticket=ticket, run=approved, sample_size=0).content["capability"]
    assert contract["instructions"] == "Say hello to [redacted:email]" and contract["instructions_withheld"] is False


def test_it_stays_frozen_when_the_policy_logs_and_comparison_change(
    client: Any, proof: ProofArtifact, ticket: Ticket, approved: ComparisonRun
) -> None:
    proof.published_at = proof.created_at
    proof.save(update_fields=["published_at"])
    before = json.dumps(proof.content, sort_keys=True)
    page = client.get(f"/proof/{proof.slug}/").content
    exports = {fmt: client.get(f"/proof/{proof.slug}/proof.{fmt}").content for fmt in ("html", "md", "json")}

    Capability.objects.filter(pk=ticket.capability_id).update(
        intent="generation", privacy="local_only", latency_budget_ms=1, fallback="fail_closed", instructions="changed"
    )
    ComparisonRun.objects.filter(pk=approved.pk).update(contract={"intent": "judgment"}, routes=[])
    ComparisonResult.objects.filter(run=approved).update(output="rewritten", passed=False, latency_ms=99999)
    RouteLog.objects.update(outcome="failed", backend="", reasons=["rewritten"])
    Attempt.objects.all().delete()
    ticket.criteria.update(threshold=Decimal("0"))
    ticket.title = "renamed"
    ticket.save(update_fields=["title"])

    proof.refresh_from_db()
    assert json.dumps(proof.content, sort_keys=True) == before
    assert client.get(f"/proof/{proof.slug}/").content == page
    assert {fmt: client.get(f"/proof/{proof.slug}/proof.{fmt}").content for fmt in exports} == exports


def test_it_samples_the_most_recent_route_logs_of_one_outcome(policy: Capability, traffic: list[int], sim: Any) -> None:
    entries = sample_route_logs(capability="classify-fast", size=2)
    assert [e.pk for e in entries] == traffic[::-1][:2]
    assert sample_route_logs(capability="classify-fast", size=0) == []
    assert sample_route_logs(capability="classify-fast", size=5, outcome="fallback") == []
    assert len(sample_route_logs(capability="classify-fast", size=5, outcome="primary")) == 3
    with pytest.raises(ProofError):
        sample_route_logs(capability="classify-fast", size=MAX_SAMPLE + 1)


def test_it_refuses_a_run_that_is_not_done_or_not_the_tickets(ticket: Ticket, evidence: ComparisonRun, policy: Capability) -> None:
    ComparisonRun.objects.filter(pk=evidence.pk).update(status="cancelled")
    evidence.refresh_from_db()
    with pytest.raises(ProofError, match="cancelled, not done"):
        make_proof(ticket=ticket, run=evidence, sample_size=0)
    other = Ticket.objects.create(key="FOS-9", title="other", capability=policy)
    with pytest.raises(ProofError, match="does not belong to FOS-9"):
        make_proof(ticket=other, run=evidence, sample_size=0)


@pytest.mark.parametrize(
    ("ref", "text", "url"),
    [
        ("0123abcd", "0123abcd", None),
        ("a" * 40, "a" * 40, None),
        ("https://git.example.com/o/r/commit/" + "ab12" * 10, "https://git.example.com/o/r/commit/" + "ab12" * 10, "same"),
        ("https://user:pw@git.example.com/c/0123abcd?token=x#frag", "https://git.example.com/c/0123abcd", "same"),
        ("javascript:alert(1)", "javascript:alert(1)", None),
        ("http://10.1.2.3/commit/0123abcd", "http://[redacted:ipv4]/commit/0123abcd", None),
        # Hex outside a commit position is not taken for a SHA: a long one reads as a token.
        ("https://hooks.example.com/t/a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "https://hooks.example.com/t/[redacted:hex_high_entropy_string]", None),
        ("https://git.example.com:99999/c/0123abcd", "https://git.example.com:99999/c/0123abcd", None),
    ],
)
def test_it_links_only_http_commit_urls_and_keeps_shas_as_text(
    ticket: Ticket, evidence: ComparisonRun, ref: str, text: str, url: str | None
) -> None:
    Ticket.objects.filter(pk=ticket.pk).update(commit_ref=ref)
    ticket.refresh_from_db()
    content = make_proof(ticket=ticket, run=evidence, sample_size=0).content
    assert content["ticket"]["commit"] == {"text": text, "url": text if url == "same" else None}
    page = proof_export.render_html(content)
    if url:
        assert f'<a href="{text}" rel="noopener noreferrer nofollow">' in page
    else:
        assert 'id="proof-commit"><code>' in page


def test_it_escapes_a_hostile_backend_label_everywhere_including_the_charts(
    ticket: Ticket, evidence: ComparisonRun
) -> None:
    hostile = '"><svg onload=alert(1)><script>alert(2)</script>'
    lanes = [{**lane, "backend": hostile if i == 0 else lane["backend"]} for i, lane in enumerate(evidence.routes)]
    ComparisonRun.objects.filter(pk=evidence.pk).update(routes=lanes)
    ComparisonResult.objects.filter(run=evidence).update(output="<img src=x onerror=alert(3)>")
    evidence.refresh_from_db()
    content = build_content(slug="fos-142-abcdefgh", ticket=ticket, run=evidence, route_logs=[], created_at=evidence.created_at)
    page = proof_export.render_html(content)
    assert "<svg onload" not in page and "<script" not in page and "<img" not in page
    assert "&lt;svg onload=alert(1)&gt;" in page
    assert page.count('<svg class="chart"') == 4
    markdown = proof_export.render_markdown(content)
    assert not re.search(r"(?<!\\)<", markdown), "an unescaped < in the Markdown"
    assert "\\<img src=x onerror=alert\\(3\\)\\>" in markdown


def test_it_renders_standalone_html_with_inline_styles_and_nothing_external(proof: ProofArtifact) -> None:
    page = proof_export.render_html(proof.content)
    assert page.startswith("<!doctype html>") and "<style>" in page
    for absent in ("<script", "<link", "src=", "/console/", "/static/", "csrfmiddlewaretoken", "hx-"):
        assert absent not in page, absent
    assert "proof.json" not in page  # the download links are for the public page only
    assert "proof.json" in proof_export.render_html(proof.content, downloads=True)
    # The only links: the commit's, when it is a URL.
    assert re.findall(r'href="([^"]*)"', page) == []


def test_it_renders_markdown_with_every_section(proof: ProofArtifact) -> None:
    markdown = proof_export.render_markdown(proof.content)
    for heading in ("# Proof for FOS-142: Cheaper classification", "## Capability contract", "## Routes compared", "## Acceptance criteria",
                    "## Decisions", "## Cases side by side", "## Route log sample"):  # fmt: skip
        assert heading in markdown, heading
    assert "private case: output withheld" in markdown
    assert "| candidate | proposed |" in markdown


def test_it_writes_amounts_without_exponents() -> None:
    assert [proof_export.amount(v) for v in (0.001, 0.00001, 2.5, 0.0)] == ["$0.001", "$0.00001", "$2.5", "$0"]


def test_it_escapes_markup_in_markdown() -> None:
    assert proof_export.md("[click](javascript:alert(1)) <b>&") == "\\[click\\]\\(javascript:alert\\(1\\)\\) \\<b\\>\\&"
    assert proof_export.md_block("- item\n# heading\n1. first") == "\\- item  \n\\# heading  \n1\\. first"
    assert proof_export.md_link("x", "https://e.example/a b<c>") == "[x](<https://e.example/a%20b%3Cc%3E>)"
