"""Proof artifacts: a ticket's evidence, frozen and sanitized so that it is safe to publish.

A proof is built once (`make_proof`) from a ticket, one of its finished comparison runs, the
ticket's criteria and decisions, and a sample of the capability's route log entries. The
result, `ProofArtifact.content`, is plain JSON described by `tickets/proof_schema.json`
(`schema_version` 1); the pages and the exports render that JSON and read nothing else, so
later edits to the policy, the route logs or the comparison do not change a proof.

How it is kept safe:

- Allow-list. Every value is copied field by field into a new structure; no record is ever
  serialized and then trimmed. Values from a closed set (intent, privacy, error classes,
  statuses, adapters, localities) are checked against that set; numbers are numbers.
- Every other string (titles, descriptions, comments, override reasons, criterion notes,
  outputs, upstream error text, reasons, verification details, case names and expected
  answers, model names, even backend slugs) goes through `_Sanitizer.text`: first every known
  secret reference is replaced (the whole `env:NAME` / `file:/path`, and the bare name or path,
  for the backends in the registry and in the run), then generic reference shapes, then
  `routing.redaction.redact(deep=True)` (provider keys, tokens, private keys, JWTs, emails,
  phones, cards, IPs, and detect-secrets' plugins). Each replacement is counted by kind.
- Inputs never appear: an evaluation case shows the SHA-256 and length of its input, private
  or not, and a route log entry its stored `input_sha256` and `input_chars` (the redacted
  `input_preview` some capabilities keep is not copied).
- Private evaluation cases: no name, no expected answer, no output, no error detail; the cell
  says "private case: output withheld". Instructions marked private (on the run's frozen
  contract or on the capability now) are left out entirely; others are shown, redacted.
- Never included: secret references, base URLs, tool configurations, backend notes, the
  proposal's note, the ticket's external URL (an internal tracker), callers, metadata, e-mail
  addresses of users, and internal ids (route log, run, case, route, user ids), nor the
  policy revision numbers. The
  proof's slug is its only identifier; a case is "case 3", its position in the run.
- Reviewers are shown by username, redacted like any text (a username that is an e-mail
  address becomes `[redacted:email]`), with their role: a decision is worth publishing
  because someone accountable took it.

Route log entries store no outputs (nor inputs), so a sampled entry shows intent, selected
backend, fallback eligibility and use, outcome, verification result and reasons; the outputs
a proof shows come from the comparison run.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from registry.contracts import ERROR_CLASSES, VERIFY_KINDS
from registry.models import Backend, Capability
from routing.comparisons import METRICS, grid, summarize
from routing.models import Attempt, ComparisonResult, ComparisonRun, EvaluationCase, RouteLog
from routing.redaction import ELLIPSIS, MARKER_OPENING, marker, redact
from tickets.criteria import judge
from tickets.models import COMMIT_SHA, ProofArtifact, Review, Ticket, is_web_url

SCHEMA_VERSION = 1
MAX_SAMPLE = 20
# Long answers are cut (after redaction) so a proof stays readable; the comparison page in the
# console has them whole.
OUTPUT_CHARS = 1000
SLUG_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o or 1/l: slugs get read aloud
WITHHELD_OUTPUT = "private case: output withheld"
SECRET_REFERENCE = "secret_reference"

# Secret references wherever they occur, known or not: "env:NAME", "file:/path", and the names
# the resolver's own messages put in ("environment variable NAME is not set", "file /x ...").
_REFERENCE_SHAPES = (
    re.compile(r"\b(?:env|file):[^\s,;()\"'\[\]]+"),
    re.compile(r"(?<=environment variable )[^\s,;()\"'\[\]]+"),
    re.compile(r"(?<=\bfile )/[^\s,;()\"'\[\]]+"),
)


class ProofError(ValueError):
    """A proof that cannot be made as asked; the message says why."""


class _Sanitizer:
    """Every string on its way into a proof, and the tally of what was taken out of it."""

    def __init__(self, *, secret_refs: Iterable[str]) -> None:
        known: set[str] = set()
        for ref in secret_refs:
            ref = (ref or "").strip()
            if not ref:
                continue
            known.add(ref)
            _, colon, target = ref.partition(":")
            if colon and target:
                known.add(target)
        # Whole tokens only, longest first, so "env:NAME" is taken whole before "NAME" alone.
        names = sorted((name for name in known if len(name) >= 3), key=len, reverse=True)
        self._known = (
            re.compile("(?<![A-Za-z0-9_])(?:" + "|".join(re.escape(n) for n in names) + ")(?![A-Za-z0-9_])")
            if names
            else None
        )
        self.counts: Counter[str] = Counter()
        self.withheld: Counter[str] = Counter()

    def text(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        text = str(value)
        for regex in ([self._known] if self._known else []) + list(_REFERENCE_SHAPES):
            text, found = regex.subn(marker(SECRET_REFERENCE), text)
            self.counts[SECRET_REFERENCE] += found
        result = redact(text, deep=True)
        self.counts.update(result.counts)
        return result.text

    def optional(self, value: Any) -> str | None:
        text = self.text(value)
        return text or None

    def output(self, value: str) -> str:
        return _clip(self.text(value), OUTPUT_CHARS)

    def summary(self) -> dict[str, Any]:
        by_kind = {kind: n for kind, n in sorted(self.counts.items()) if n}
        return {"total": sum(by_kind.values()), "by_kind": by_kind, "withheld": dict(sorted(self.withheld.items()))}


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters of already redacted text, never cutting a marker in half."""
    if len(text) <= limit:
        return text
    cut = limit - len(ELLIPSIS)
    opening = text.rfind(MARKER_OPENING, 0, cut + len(MARKER_OPENING) - 1)
    if opening != -1 and text.find("]", opening) >= cut:
        cut = opening
    return text[:cut] + ELLIPSIS


def _choice(value: Any, allowed: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in set(allowed) else "unknown"


def _error_class(value: Any) -> str:
    return "" if not value else _choice(value, ERROR_CLASSES)


def _number(value: Decimal | float | int | None) -> float | None:
    return None if value is None else float(value)


def _when(value: datetime | None) -> str | None:
    # To the second: finer timing says nothing a reader needs.
    return None if value is None else value.astimezone(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha256(text: str) -> str:
    # The same fingerprint the router keeps for a plain-text input (routing.executor).
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_slug(ticket_key: str) -> str:
    return f"{ticket_key.lower()}-" + "".join(secrets.choice(SLUG_ALPHABET) for _ in range(8))


# --- the parts of a proof -----------------------------------------------------------------------


# Path segments after which a forge puts a commit SHA (GitHub, GitLab, Gitea, Bitbucket, ...).
_SHA_PARENTS = frozenset({"commit", "commits", "tree", "blob", "rev", "changeset"})


def _commit(ref: str, s: _Sanitizer) -> dict[str, Any] | None:
    """A commit SHA as text; an http(s) URL as a link, without credentials, query or fragment
    (where tokens live), the SHA after .../commit/ kept and every other part redacted."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if COMMIT_SHA.match(ref):
        # Validated hex: shown as is (the entropy detector would take a 40-digit SHA for a key).
        return {"text": ref, "url": None}
    try:
        parts = urlsplit(ref)
        port = parts.port
    except ValueError:
        return {"text": s.text(ref), "url": None}
    if not is_web_url(ref):
        return {"text": s.text(ref), "url": None}
    if parts.username or parts.password or parts.query or parts.fragment:
        s.counts["url_parts_removed"] += 1
    host = s.text(parts.hostname or "") + (f":{port}" if port else "")
    path = parts.path.split("/")
    segments = [
        seg if index and path[index - 1] in _SHA_PARENTS and COMMIT_SHA.match(seg) else s.text(seg)
        for index, seg in enumerate(path)
    ]
    url = f"{parts.scheme}://{host}" + "/".join(segments)
    # A redaction marker inside the URL makes it no link worth following: text only.
    return {"text": url, "url": url if MARKER_OPENING not in url and is_web_url(url) else None}


def _ticket(ticket: Ticket, s: _Sanitizer) -> dict[str, Any]:
    return {
        "key": ticket.key,  # validated: uppercase letters, a dash, digits
        "title": s.text(ticket.title),
        "description": s.text(ticket.description),
        "status": _choice(ticket.status, Ticket.Status.values),
        "commit": _commit(ticket.commit_ref, s),
    }


def _verify_detail(rule: dict[str, Any]) -> str:
    kind = rule.get("kind")
    if kind == "one_of":
        return "one of: " + ", ".join(str(v) for v in rule.get("values") or [])
    if kind == "regex":
        return f"matches the pattern {rule.get('pattern', '')}"
    if kind == "max_chars":
        return f"at most {rule.get('limit')} characters"
    if kind == "json_schema":
        return "valid against a JSON schema"
    if kind == "non_empty":
        return "not empty"
    return ""


def _capability(run: ComparisonRun, s: _Sanitizer) -> dict[str, Any]:
    """The contract as it stood when the run was made (what the evidence is about)."""
    contract = run.contract or {}
    capability: Capability = run.capability
    # Private if marked so then or now: marking instructions private later must not publish them.
    private = bool(contract.get("instructions_private")) or capability.instructions_private
    instructions = contract.get("instructions") or ""
    if private and instructions:
        s.withheld["instructions"] += 1
    rule = contract.get("verify") if isinstance(contract.get("verify"), dict) else {}
    latency = contract.get("latency_budget_ms")
    max_cost = contract.get("max_cost_usd")
    return {
        "slug": s.text(capability.slug),
        "name": s.text(contract.get("name") or capability.name),
        "intent": _choice(contract.get("intent"), Capability.Intent.values),
        "privacy": _choice(contract.get("privacy"), Capability.Privacy.values),
        "max_cost_usd": float(max_cost) if isinstance(max_cost, (int, float)) else None,
        "latency_budget_ms": int(latency) if isinstance(latency, (int, float)) else None,
        "fallback": _choice(contract.get("fallback"), Capability.Fallback.values),
        "fallback_on": [_error_class(c) for c in contract.get("fallback_on") or [] if c],
        "verify": {"kind": _choice(rule.get("kind"), VERIFY_KINDS), "detail": s.text(_verify_detail(rule))},
        "instructions": None if private else s.text(instructions),
        "instructions_withheld": private and bool(instructions),
    }


def _comparison(run: ComparisonRun, s: _Sanitizer) -> tuple[dict[str, Any], list[Any]]:
    results = list(ComparisonResult.objects.filter(run=run))
    cases = list(run.cases.order_by("id"))
    summaries = summarize(run, results)
    lanes = {lane["route"]: lane for lane in run.routes}
    routes = []
    for summary in summaries:
        spec = lanes[summary.route_id].get("spec") or {}
        metrics = {name: _number(summary.metrics.get(name)) for name in METRICS}
        metrics["latency_p50_ms"] = _number(summary.latency_p50_ms)
        routes.append(
            {
                "backend": s.text(summary.backend),
                "role": s.text(summary.role),
                "adapter": _choice(spec.get("adapter"), Backend.Adapter.values),
                "locality": _choice(spec.get("locality"), Backend.Locality.values),
                "model": s.text(spec.get("model") or spec.get("tool") or ""),
                "baseline": summary.is_baseline,
                "inspectability": {"level": summary.inspectability[0], "explanation": summary.inspectability[1]},
                "cases": summary.cases,
                "cases_run": summary.run,
                "cases_not_run": summary.not_run,
                "answered": summary.answered,
                "passed": summary.passed,
                "metrics": metrics,
                "metric_notes": {name: s.text(why) for name, why in sorted(summary.reasons.items()) if name in metrics},
                "errors_by_class": _errors_by_class(summary.errors_by_class),
            }
        )
    baseline = next((route["backend"] for route in routes if route["baseline"]), None)
    rows = []
    for number, row in enumerate(grid(run, results, cases), start=1):
        case: EvaluationCase = row.case
        s.withheld["case_inputs"] += 1
        rows.append(
            {
                "label": f"case {number}",
                "private": case.private,
                "name": None if case.private else s.optional(case.name),
                "input_sha256": _sha256(case.input),
                "input_chars": len(case.input),
                "expected": None if case.private else s.optional(case.expected),
                "cells": [_cell(cell, route["backend"], case.private, s) for cell, route in zip(row.cells, routes)],
            }
        )
    comparison = {
        "status": _choice(run.status, ComparisonRun.Status.values),
        "created_at": _when(run.created_at),
        "finished_at": _when(run.finished_at),
        "baseline": baseline,
        "routes": routes,
        "cases": rows,
    }
    return comparison, summaries


def _errors_by_class(counts: dict[str, int]) -> dict[str, int]:
    tally: Counter[str] = Counter()
    for name, n in counts.items():
        tally[_error_class(name) or "unknown"] += n
    return dict(sorted(tally.items()))


def _cell(cell: Any, backend: str, private: bool, s: _Sanitizer) -> dict[str, Any]:
    result: ComparisonResult | None = cell.result
    if result is None:
        return {
            "backend": backend,
            "status": "missing",
            "passed": None,
            "error_class": "",
            "latency_ms": None,
            "cost_usd": 0.0,
            "output": None,
            "output_withheld": False,
            "detail": "",
            "differs_from_baseline": None,
            "matches_expected": None,
        }
    status = _choice(result.status, ComparisonResult.Status.values)
    answered = status == ComparisonResult.Status.OK
    if private and answered:
        s.withheld["private_case_outputs"] += 1
    # A private case's error detail may quote what was sent; only the router's own "not run"
    # reason is kept.
    if private and status != ComparisonResult.Status.NOT_RUN:
        detail = ""
        if result.detail:
            s.withheld["private_case_details"] += 1
    else:
        detail = s.text(result.detail)
    return {
        "backend": backend,
        "status": status,
        "passed": result.passed,
        "error_class": _error_class(result.error_class),
        "latency_ms": _number(result.latency_ms),
        "cost_usd": float(result.cost_usd or 0),
        "output": None if private or not answered else s.output(result.output),
        "output_withheld": private and answered,
        "detail": detail,
        "differs_from_baseline": None if private or not answered else cell.differs,
        "matches_expected": None if private else cell.matches_expected,
    }


def _criteria(ticket: Ticket, summaries: list[Any], routes: list[dict[str, Any]], s: _Sanitizer) -> tuple[list[Any], list[Any]]:
    criteria = list(ticket.criteria.all())
    verdicts = [judge(criteria, summary) for summary in summaries]
    rows = []
    for index, criterion in enumerate(criteria):
        rows.append(
            {
                "text": s.text(str(criterion)),
                "metric": _choice(criterion.metric, criterion.Metric.values),
                "comparison": _choice(criterion.comparison, criterion.Comparison.values),
                "threshold": s.text(criterion.threshold_text),
                "note": s.text(criterion.note),
                "results": [
                    {
                        "backend": route["backend"],
                        "met": verdict.results[index].met,
                        "evaluable": verdict.results[index].evaluable,
                        "value": s.optional(verdict.results[index].value),
                        "reason": s.text(verdict.results[index].reason),
                    }
                    for route, verdict in zip(routes, verdicts)
                ],
            }
        )
    overall = [
        {"backend": route["backend"], "met": verdict.met, "summary": s.text(verdict.summary)}
        for route, verdict in zip(routes, verdicts)
    ]
    return rows, overall


def _decisions(ticket: Ticket, run: ComparisonRun, s: _Sanitizer) -> list[dict[str, Any]]:
    reviews = ticket.reviews.select_related("reviewer", "proposal__route__backend").order_by("created_at", "id")
    decisions = []
    for review in reviews:
        if review.comparison_run_id is None:
            evidence = "none"
        else:
            evidence = "this comparison" if review.comparison_run_id == run.pk else "another comparison"
        decisions.append(
            {
                "decision": _choice(review.decision, Review.Decision.values),
                "backend": s.text(review.proposal.route.backend.slug),
                "reviewer": s.text(review.reviewer.get_username()),
                "role": "reviewer",
                "decided_at": _when(review.created_at),
                "comment": s.text(review.comment),
                "override_reason": s.text(review.override_reason),
                "evidence": evidence,
                "criteria": [
                    {
                        "text": s.text(item.get("text")),
                        "met": bool(item.get("met")),
                        "evaluable": bool(item.get("evaluable")),
                        "reason": s.text(item.get("reason")),
                    }
                    for item in review.criteria_results or []
                    if isinstance(item, dict)
                ],
            }
        )
    return decisions


def sample_route_logs(*, capability: str, size: int, outcome: str = "") -> list[RouteLog]:
    """The capability's most recent route log entries (of one outcome, if given), newest first."""
    if not 0 <= size <= MAX_SAMPLE:
        raise ProofError(f"a route log sample holds 0 to {MAX_SAMPLE} entries")
    entries = RouteLog.objects.filter(capability=capability)
    if outcome and outcome != ProofArtifact.SampleOutcome.ANY:
        entries = entries.filter(outcome=outcome)
    return list(entries.order_by("-created_at", "-id").prefetch_related("attempts")[:size]) if size else []


def _route_log(entry: RouteLog, s: _Sanitizer) -> dict[str, Any]:
    attempts: list[Attempt] = sorted(entry.attempts.all(), key=lambda a: a.index)
    return {
        "created_at": _when(entry.created_at),
        "capability": s.text(entry.capability),
        "intent": _choice(entry.intent, Capability.Intent.values),
        "privacy": _choice(entry.privacy, Capability.Privacy.values),
        "outcome": _choice(entry.outcome, RouteLog.Outcome.values),
        "backend": s.optional(entry.backend),
        "fallback_eligible": bool(entry.fallback_eligible),
        "fallback_used": bool(entry.fallback_used),
        "error_class": _error_class(entry.error_class),
        "reasons": [s.text(reason) for reason in entry.reasons or [] if isinstance(reason, str)],
        "verification": _verification(entry.verification, s),
        "input_sha256": entry.input_sha256 if re.fullmatch(r"[0-9a-f]{64}", entry.input_sha256 or "") else "",
        "input_chars": entry.input_chars,
        "latency_ms": _number(entry.latency_ms),
        "cost_usd": float(entry.cost_usd or 0),
        "attempts": [
            {
                "backend": s.text(attempt.backend),
                "locality": _choice(attempt.locality, Backend.Locality.values),
                "adapter": _choice(attempt.adapter, Backend.Adapter.values),
                "status": _choice(attempt.status, Attempt.Status.values),
                "error_class": _error_class(attempt.error_class),
                "detail": s.text(attempt.detail),
                "latency_ms": _number(attempt.latency_ms),
                "cost_usd": float(attempt.cost_usd or 0),
            }
            for attempt in attempts
        ],
    }


def _verification(value: Any, s: _Sanitizer) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {"passed": bool(value.get("passed")), "detail": s.text(value.get("detail"))}


# --- making one ---------------------------------------------------------------------------------


def build_content(
    *,
    slug: str,
    ticket: Ticket,
    run: ComparisonRun,
    route_logs: list[RouteLog],
    sample_outcome: str = "",
    created_at: datetime,
) -> dict[str, Any]:
    """The proof's content: new JSON, built field by field from the allow-list above."""
    refs = set(Backend.objects.exclude(secret_ref="").values_list("secret_ref", flat=True))
    refs |= {str((lane.get("spec") or {}).get("secret") or "") for lane in run.routes}
    s = _Sanitizer(secret_refs=refs)
    comparison, summaries = _comparison(run, s)
    criteria, verdicts = _criteria(ticket, summaries, comparison["routes"], s)
    content = {
        "schema_version": SCHEMA_VERSION,
        "slug": slug,
        "created_at": _when(created_at),
        "ticket": _ticket(ticket, s),
        "capability": _capability(run, s),
        "comparison": comparison,
        "criteria": criteria,
        "verdicts": verdicts,
        "decisions": _decisions(ticket, run, s),
        "route_log_sample": {
            "size": len(route_logs),
            "outcome": sample_outcome if sample_outcome in ProofArtifact.SampleOutcome.values else "any",
            "entries": [_route_log(entry, s) for entry in route_logs],
        },
    }
    # Last, so it counts every redaction above.
    content["redactions"] = s.summary()
    return content


def make_proof(
    *, ticket: Ticket, run: ComparisonRun, sample_size: int, sample_outcome: str = "", created_by: Any = None
) -> ProofArtifact:
    """Build and store a proof of `ticket` from `run` and the capability's latest route logs."""
    if run.ticket_ref != ticket.key or run.capability_id != ticket.capability_id:
        raise ProofError(f"comparison run {run.pk} does not belong to {ticket.key}")
    if run.status != ComparisonRun.Status.DONE:
        raise ProofError(f"comparison run {run.pk} is {run.status}, not done")
    logs = sample_route_logs(capability=ticket.capability.slug, size=sample_size, outcome=sample_outcome)
    now = timezone.now()
    slug = new_slug(ticket.key)
    while ProofArtifact.objects.filter(slug=slug).exists():  # 40 random bits: practically never
        slug = new_slug(ticket.key)
    content = build_content(slug=slug, ticket=ticket, run=run, route_logs=logs, sample_outcome=sample_outcome, created_at=now)
    with transaction.atomic():
        return ProofArtifact.objects.create(
            slug=slug,
            ticket=ticket,
            comparison_run=run,
            created_by=created_by,
            schema_version=SCHEMA_VERSION,
            content=content,
            redaction_counts=content["redactions"]["by_kind"],
        )


def publish(*, proof: ProofArtifact) -> bool:
    """Publish at /proof/<slug>/; False when it already was (compare-and-set)."""
    return bool(ProofArtifact.objects.filter(pk=proof.pk, published_at__isnull=True).update(published_at=timezone.now()))


def unpublish(*, proof: ProofArtifact) -> bool:
    """Take the public page down (it answers 404); False when it was not published."""
    return bool(ProofArtifact.objects.filter(pk=proof.pk, published_at__isnull=False).update(published_at=None))
