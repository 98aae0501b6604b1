"""The leak test: seed recognisable secrets, personal data and marker strings everywhere a proof
draws from, make and publish a proof, and look for every one of them in every sink.

Two kinds of seed:

- Text a proof shows, redacted (ticket title and description, comments, the override reason,
  criterion notes, non-private case names, outputs, upstream errors, route log reasons): these
  hold secrets and personal data in the formats the redaction knows, and markers only as the
  value of a labelled secret ("password: ...MARKER..."). None may survive.
- Text a proof never shows (every case input, private case names, expected answers and outputs,
  private instructions, the proposal note, backend notes, base URLs, callers, metadata, input
  previews, secret references): these hold plain markers. None may appear at all.

Every seeded secret holds "LEAK" and every marker "MARKER", so beyond the exact values each
sink is also searched for those two words.
"""

from __future__ import annotations

import base64
import html
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from registry.models import Backend, Capability
from registry.roles import ensure_roles
from routing import RouteFailed, run
from routing.models import Attempt, ComparisonResult, EvaluationCase, RouteLog
from tests.tickets.conftest import TRIAGE, http_backend
from tests.tickets.test_proof import finished_run
from tickets import review
from tickets.models import AcceptanceCriterion, ProofArtifact, Ticket
from tickets.proof import make_proof

pytestmark = pytest.mark.django_db


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


OPENAI_KEY = "sk-proj-LEAKoai0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
ANTHROPIC_KEY = "sk-ant-api03-LEAKant0123456789abcdefghijklmnopqrstuvwxyz-AAAA"
AWS_ACCESS_KEY = "AKIALEAK0123456789AB"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAKKEY123"
GITHUB_TOKEN = "ghp_LEAK" + "a1B2c3D4e5" * 3 + "Zy"
GITHUB_PAT = "github_pat_11LEAK0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH"
JWT = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': 'LEAKjwt', 'exp': 1900000000})}.c2lnbmF0dXJlTEVBS3NpZ25hdHVyZQ"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEALEAKpemQ2Yq0vJ3mJ9x1B2c3d4e5f6g7h8i9j0k1l2m3n4\n"
    "o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F2G3H4I5J6K7L8M9N0O1P2Q3R4S5T6\n"
    "-----END RSA PRIVATE KEY-----"
)
BEARER = "LEAKbearer0123456789"
EMAIL = "leak.person+LEAK@example.com"
REVIEWER_EMAIL = "reviewer.LEAK@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IP = "203.0.113.7"
ENV_KEY = "sk-proj-LEAKenv0123456789abcdefghijklmnopqrstuvwxyz"  # the value behind the leaky backend's reference
# Only detect-secrets' pass (deep=True) finds these two.
DB_PASS = "LEAKvalue9"
BLOB = "q8Zr2LmX0vTn7Kp4Wb9sYc1HdJf6Ge3Ua5Ri"
ENV_NAME = "FOS_PROOF_LEAK_KEY_VAR"
UNSET_ENV_NAME = "FOS_PROOF_UNSET_LEAK_VAR"

SECRETS = [
    OPENAI_KEY, ANTHROPIC_KEY, AWS_ACCESS_KEY, AWS_SECRET, GITHUB_TOKEN, GITHUB_PAT, JWT, PEM,
    PEM.splitlines()[1], BEARER, EMAIL, REVIEWER_EMAIL, PHONE, "7946 0958", CARD, CARD.replace(" ", ""), IP,
    DB_PASS, BLOB, ENV_KEY, ENV_NAME, UNSET_ENV_NAME, f"env:{ENV_NAME}", f"env:{UNSET_ENV_NAME}",
]  # fmt: skip
MARKERS = {
    "private input": "PRIVATE-INPUT-MARKER-7f3a",
    "public input": "PUBLIC-INPUT-MARKER-3e9d",
    "routed input": "ROUTE-INPUT-MARKER-1b2c",
    "private output": "PRIVATE-OUTPUT-MARKER-5d2b",
    "output": "OUTPUT-MARKER-9c2e",
    "private instructions": "INSTRUCTIONS-MARKER-2b6e",
    "private case name": "PRIVATE-NAME-MARKER-6a0f",
    "private expected": "PRIVATE-EXPECTED-MARKER-0c3e",
    "proposal note": "PROPOSAL-NOTE-MARKER-8d7a",
    "backend notes": "BACKEND-NOTES-MARKER-4f1e",
    "caller": "CALLER-MARKER-9e2d",
    "metadata": "METADATA-MARKER-1a4b",
    "input preview": "PREVIEW-MARKER-77c0",
    "description": "DESCRIPTION-MARKER-a41c",
    "comment": "COMMENT-MARKER-5e5e",
    "override reason": "OVERRIDE-MARKER-3c3c",
    "upstream error": "UPSTREAM-MARKER-0f0f",
}
# The answer travels in the backend's base_url (at most 500 characters), so it holds the kinds
# the other seeds do not already cover. The labelled marker last: detect-secrets' keyword rule
# hides the rest of its line, which would fold every secret after it into one finding.
OUTPUT = f"billing {OPENAI_KEY} {AWS_ACCESS_KEY} {GITHUB_TOKEN} {EMAIL} {PHONE} {CARD} {IP} password={MARKERS['output']}"


@pytest.fixture
def leaky(install_policy: Any, sim: Any, monkeypatch: pytest.MonkeyPatch, operator: Any) -> Ticket:
    monkeypatch.setenv(ENV_NAME, ENV_KEY)
    monkeypatch.delenv(UNSET_ENV_NAME, raising=False)
    install_policy(
        backends={
            # Hosted, its reference names an unset variable: skipped by the planner, named in reasons.
            "unset": http_backend(sim, "openai", "answer=billing", locality="hosted", secret_ref=f"env:{UNSET_ENV_NAME}"),
            # Hosted, presents ENV_KEY where the simulator wants another: a 401 that echoes it.
            "leaky": http_backend(sim, "openai", "key=wrong", locality="hosted", secret_ref=f"env:{ENV_NAME}"),
            # Answers every case with secrets and personal data (and fails verification).
            "talker": http_backend(sim, "ollama", "answer=" + quote(OUTPUT, safe="@:=+"), notes=MARKERS["backend notes"]),
            "triage": TRIAGE,
            "rival": http_backend(sim, "openai", "tag=rival,answer=billing"),
        },
        capabilities={
            "classify-leaky": {
                "intent": "classification",
                "privacy": "hosted_allowed",
                "verify": {"kind": "one_of", "values": ["urgent", "billing", "other"]},
                "fallback_on": ["auth", "connection", "verification_failed", "server_error"],
                "instructions": f"{MARKERS['private instructions']} Label the message.",
                "instructions_private": True,
                "log_input": "redacted",
                "routes": ["unset", "leaky", "talker", "triage"],
            }
        },
    )
    capability = Capability.objects.get(slug="classify-leaky")
    return Ticket.objects.create(
        key="FOS-77",
        title=f"Cheaper triage for {EMAIL}",
        capability=capability,
        description=f"Seen at {IP}, call {PHONE}. Key {ANTHROPIC_KEY} was pasted here.\ntoken: {MARKERS['description']}\n{PEM}",
        commit_ref=f"https://deploy:{GITHUB_TOKEN}@git.example.com/o/r/commit/0123abcd?access_token={GITHUB_PAT}",
        created_by=operator,
    )


def seed(ticket: Ticket, operator: Any) -> ProofArtifact:
    capability = ticket.capability
    AcceptanceCriterion.objects.create(
        ticket=ticket, metric="verification_pass_rate", comparison="at_least", threshold=Decimal("1"), note=f"ask {EMAIL} or {PHONE}"
    )
    AcceptanceCriterion.objects.create(ticket=ticket, metric="latency_p95_ms", comparison="at_most", threshold=Decimal("0"))
    cases = [
        EvaluationCase.objects.create(capability=capability, name=f"invoice from {EMAIL}", input=f"{MARKERS['public input']} the invoice is wrong {OPENAI_KEY}", expected="billing"),
        EvaluationCase.objects.create(
            capability=capability,
            name=MARKERS["private case name"],
            input=f"{MARKERS['private input']} my card {CARD}, key {GITHUB_TOKEN}",
            expected=MARKERS["private expected"],
            private=True,
        ),
    ]  # fmt: skip
    # Routed calls: the input is kept only as a hash (and, for this capability, a redacted preview).
    for _ in range(2):
        try:
            run("classify-leaky", f"{MARKERS['routed input']} invoice {CARD}", caller=MARKERS["caller"], metadata={"m": MARKERS["metadata"]})
        except RouteFailed:
            pass
    # An entry written before redaction existed: raw secrets in its reasons and attempt detail.
    old = RouteLog.objects.create(
        created_at=timezone.now(), caller=MARKERS["caller"], capability="classify-leaky", intent="classification",
        privacy="hosted_allowed", policy_revision=1, outcome="fallback", backend="triage", fallback_eligible=True,
        fallback_used=True, reasons=[f"leaky: failed: auth (Incorrect API key provided: {ENV_KEY})", f"secret reference env:{UNSET_ENV_NAME} does not resolve"],
        verification={"passed": True, "detail": f"one of the 3 expected values {JWT}"}, input_sha256="0" * 64, input_chars=12,
        input_preview=MARKERS["input preview"], latency_ms=3.0, metadata={"m": MARKERS["metadata"]},
    )  # fmt: skip
    Attempt.objects.create(
        route_log=old, index=0, backend="leaky", locality="hosted", adapter="openai", status="error", error_class="auth",
        detail=f"Authorization: Bearer {BEARER} refused; aws_secret_access_key = {AWS_SECRET}; secret={MARKERS['upstream error']}; {AWS_ACCESS_KEY}\ndb_pass = {DB_PASS}\nblob {BLOB}",
        latency_ms=1.0,
    )  # fmt: skip
    proposal = review.propose_route(
        ticket=ticket, backend=Backend.objects.get(slug="rival"), position=4, displaced="shift",
        note=MARKERS["proposal note"], proposed_by=operator,
    )  # fmt: skip
    routes = [*capability.routes.filter(status="active").order_by("position"), proposal.route]
    evidence = finished_run(ticket, routes, cases)
    # A model that echoed the private input: its answer must stay out as well.
    ComparisonResult.objects.filter(run=evidence, private=True, status="ok").update(output=MARKERS["private output"] + " " + CARD)
    assert ComparisonResult.objects.filter(run=evidence, private=True, status="ok").exists()
    person = get_user_model().objects.create_user(username=REVIEWER_EMAIL, password="pw-for-tests", email=REVIEWER_EMAIL)
    person.groups.add(ensure_roles()["reviewers"])
    review.approve(
        proposal=proposal,
        reviewer=person,
        comment=f"fine by me, call {PHONE} {GITHUB_PAT} password: {MARKERS['comment']}",
        run=evidence,
        override_reason=f"api_key={MARKERS['override reason']} agreed with {EMAIL} from {IP}",
    )
    made = make_proof(ticket=ticket, run=evidence, sample_size=20, created_by=operator)
    return made


def readable(body: str, kind: str) -> list[str]:
    """The body as sent and as a reader would see it once escaping is undone."""
    forms = [body]
    if kind == "html":
        forms.append(html.unescape(body))
    elif kind == "md":
        forms.append(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", body))
    elif kind == "json":
        forms.append(json.dumps(json.loads(body), ensure_ascii=False))
    return forms


def assert_clean(name: str, body: str, kind: str) -> None:
    for text in readable(body, kind):
        for value in SECRETS:
            assert value not in text, f"{name} shows a seeded secret: {value[:24]}"
        for where, value in MARKERS.items():
            assert value not in text, f"{name} shows the {where} marker"
        assert "LEAK" not in text and "MARKER" not in text, f"{name}: {text[max(0, text.find('LEAK') - 80):][:200]}"
        assert "/sim/" not in text and "key=wrong" not in text, f"{name} shows a base URL"


def test_it_leaks_nothing_seeded_into_any_sink(
    leaky: Ticket, operator: Any, client_for: Any, sim: Any
) -> None:
    proof = seed(leaky, operator)
    console = client_for(operator)
    assert console.post(f"/console/proofs/{proof.slug}/publish/").status_code == 302
    public = Client()
    sinks = {
        "public page": (public.get(f"/proof/{proof.slug}/"), "html"),
        "preview page": (console.get(f"/console/proofs/{proof.slug}/"), "html"),
        "HTML export": (console.get(f"/console/proofs/{proof.slug}/proof.html"), "html"),
        "Markdown export": (console.get(f"/console/proofs/{proof.slug}/proof.md"), "md"),
        "JSON export": (console.get(f"/console/proofs/{proof.slug}/proof.json"), "json"),
        "public HTML export": (public.get(f"/proof/{proof.slug}/proof.html"), "html"),
        "public Markdown export": (public.get(f"/proof/{proof.slug}/proof.md"), "md"),
        "public JSON export": (public.get(f"/proof/{proof.slug}/proof.json"), "json"),
    }
    for name, (response, kind) in sinks.items():
        assert response.status_code == 200, name
        assert_clean(name, response.content.decode(), kind)
    assert_clean("stored content", json.dumps(proof.content), "json")
    assert_clean("stored counts", json.dumps(proof.redaction_counts), "json")

    page = sinks["public page"][0].content.decode()
    assert "/console/" not in page and "csrfmiddlewaretoken" not in page and "<script" not in page.lower()
    # The seeds were there to find: the proof says what it took out, and the evidence is intact.
    counts = proof.content["redactions"]["by_kind"]
    for kind in ("openai_key", "anthropic_key", "aws_access_key", "aws_secret_key", "github_token", "jwt", "private_key",
                 "email", "phone", "card_number", "ipv4", "labelled_secret", "secret_reference", "url_parts_removed",
                 "secret_keyword", "base64_high_entropy_string"):  # fmt: skip
        assert counts.get(kind), kind
    for kind in counts:
        assert f'data-kind="{kind}"' in page
    assert proof.content["redactions"]["withheld"] == {
        "case_inputs": 2, "instructions": 1, "private_case_outputs": 3, "private_case_details": 1
    }  # fmt: skip
    assert "private case: output withheld" in page
    talker = next(c for c in proof.content["comparison"]["cases"][0]["cells"] if c["backend"] == "talker")
    assert talker["output"].startswith("billing [redacted:openai_key] [redacted:aws_access_key] [redacted:github_token]")
    assert "[redacted:openai_key]" in page and "[redacted:secret_reference]" in page
    attempts = [a for e in proof.content["route_log_sample"]["entries"] for a in e["attempts"]]
    assert {"leaky", "talker", "triage"} <= {a["backend"] for a in attempts}
    assert any(a["error_class"] == "auth" for a in attempts) and sim.calls("key=wrong") > 0
    assert proof.content["ticket"]["commit"] == {
        "text": "https://git.example.com/o/r/commit/0123abcd", "url": "https://git.example.com/o/r/commit/0123abcd"
    }  # fmt: skip
