"""Judging acceptance criteria: thresholds, exact ties, and what cannot be evaluated."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from registry.models import Capability, Route
from routing.comparisons import METRICS, RouteSummary, summarize
from routing.models import ComparisonResult, ComparisonRun, EvaluationCase
from tickets.criteria import evaluate, judge
from tickets.models import AcceptanceCriterion, Ticket


def criterion(metric: str, comparison: str, threshold: str) -> AcceptanceCriterion:
    return AcceptanceCriterion(metric=metric, comparison=comparison, threshold=Decimal(threshold))


def summary(**metrics: Decimal | None) -> RouteSummary:
    values: dict[str, Decimal | None] = dict.fromkeys(METRICS)
    values.update(metrics)
    return RouteSummary(
        route_id=1, backend="b", role="proposed", adapter="openai", locality="local", is_baseline=False,
        inspectability=("inspectable", ""), metrics=values, reasons={m: "no value here" for m, v in values.items() if v is None},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "comparison", "threshold", "value", "met"),
    [
        ("verification_pass_rate", "at_least", "0.8", Decimal(4) / Decimal(5), True),  # exactly the threshold
        ("verification_pass_rate", "at_least", "0.7", Decimal(7) / Decimal(10), True),  # no float rounding below it
        ("verification_pass_rate", "at_least", "0.81", Decimal("0.8"), False),
        ("latency_p95_ms", "at_most", "1500", Decimal("1500.000"), True),
        ("latency_p95_ms", "at_most", "1500", Decimal("1500.001"), False),
        ("mean_cost_usd", "at_most", "0.0021", Decimal("0.0021"), True),
        ("error_rate", "at_most", "0", Decimal("0"), True),
        ("agreement_with_baseline", "at_least", "0.9", Decimal("0.5"), False),
    ],
)
def test_it_compares_at_least_and_at_most_with_ties_meeting_the_threshold(
    metric: str, comparison: str, threshold: str, value: Decimal, met: bool
) -> None:
    result = evaluate(criterion(metric, comparison, threshold), summary(**{metric: value}))
    assert (result.evaluable, result.met) == (True, met)
    assert ("meets" if met else "misses") in result.reason


def test_it_does_not_evaluate_a_metric_without_a_value_and_counts_it_as_not_met() -> None:
    result = evaluate(criterion("latency_p95_ms", "at_most", "1000"), summary(latency_p95_ms=None))
    assert (result.evaluable, result.met, result.value) == (False, False, None)
    assert result.reason == "not evaluable: no value here"


def test_it_does_not_evaluate_a_metric_the_run_does_not_measure() -> None:
    partial = summary(verification_pass_rate=Decimal(1))
    del partial.metrics["fallback_rate"]
    result = evaluate(criterion("fallback_rate", "at_most", "0.1"), partial)
    assert not result.evaluable and not result.met
    assert result.reason == "not evaluable: the run does not measure fallback_rate"


def test_it_does_not_evaluate_a_route_missing_from_the_run() -> None:
    result = evaluate(criterion("error_rate", "at_most", "0.1"), None)
    assert not result.met and result.reason == "not evaluable: the route is not in this run"


def test_it_requires_every_criterion_and_at_least_one() -> None:
    good = summary(verification_pass_rate=Decimal(1), error_rate=Decimal(0))
    both = [criterion("verification_pass_rate", "at_least", "0.9"), criterion("error_rate", "at_most", "0")]
    assert judge(both, good).met and judge(both, good).summary == "meets all 2 criteria"
    one_missed = [*both, criterion("latency_p95_ms", "at_most", "10")]
    verdict = judge(one_missed, good)
    assert not verdict.met and verdict.summary == "misses 1 of 3 criteria"
    assert not judge([], good).met and judge([], good).summary == "the ticket has no acceptance criteria"


# The edge cases through real comparison results


@pytest.fixture
def run_of(install_policy: Any) -> Any:
    """run_of(outcomes): a finished run of one route over len(outcomes) cases, where each outcome
    is "pass", "fail" (answered, verification failed), "error" or "not_run"."""
    from tests.routing.test_executor import TRIAGE, classify

    install_policy(backends={"triage": TRIAGE, "other": TRIAGE}, capabilities={"classify": classify(["triage", "other"])})
    capability = Capability.objects.get(slug="classify")
    routes = list(capability.routes.order_by("position"))

    def make(outcomes: list[str]) -> tuple[ComparisonRun, Route]:
        lanes = [{"route": r.pk, "backend": r.backend.slug, "role": "", "spec": {"adapter": "tool", "locality": "local"}} for r in routes]
        run = ComparisonRun.objects.create(capability=capability, routes=lanes, status="done", baseline_route=routes[0])
        for index, outcome in enumerate(outcomes):
            case = EvaluationCase.objects.create(capability=capability, input=f"case {index}")
            run.cases.add(case)
            ComparisonResult.objects.create(
                run=run, case=case, route=routes[1], backend="other", locality="local",
                status={"pass": "ok", "fail": "ok", "error": "error", "not_run": "not_run"}[outcome],
                output="billing" if outcome in ("pass", "fail") else "", passed={"pass": True, "fail": False}.get(outcome),
                latency_ms=100.0 * (index + 1) if outcome in ("pass", "fail") else 5.0,
                error_class={"fail": "verification_failed", "error": "timeout"}.get(outcome, ""),
            )  # fmt: skip
        return run, routes[1]

    return make


def summary_of(run: ComparisonRun, route: Route) -> RouteSummary:
    return {s.route_id: s for s in summarize(run, list(ComparisonResult.objects.filter(run=run)))}[route.pk]


ALL = [
    ("verification_pass_rate", "at_least", "0"),
    ("latency_p95_ms", "at_most", "100000"),
    ("mean_cost_usd", "at_most", "1"),
    ("error_rate", "at_most", "1"),
    ("fallback_rate", "at_most", "1"),
    ("agreement_with_baseline", "at_least", "0"),
]


@pytest.mark.django_db
def test_it_cannot_evaluate_anything_without_cases(run_of: Any) -> None:
    run, route = run_of([])
    verdict = judge([criterion(*c) for c in ALL], summary_of(run, route))
    assert not verdict.met
    assert all(not r.evaluable and not r.met for r in verdict.results)
    assert verdict.results[0].reason == "not evaluable: no case was run on this route"


@pytest.mark.django_db
def test_it_scores_every_case_erroring_as_zero_passes_and_no_latency(run_of: Any) -> None:
    run, route = run_of(["error", "error", "error"])
    s = summary_of(run, route)
    assert s.metrics["verification_pass_rate"] == 0 and s.metrics["error_rate"] == 1
    latency = evaluate(criterion("latency_p95_ms", "at_most", "100000"), s)
    assert not latency.evaluable and latency.reason == "not evaluable: no case was answered by this route"
    assert evaluate(criterion("verification_pass_rate", "at_least", "0"), s).met  # 0 >= 0
    assert not evaluate(criterion("verification_pass_rate", "at_least", "0.01"), s).met


@pytest.mark.django_db
def test_it_meets_a_pass_rate_threshold_exactly_and_times_only_answered_cases(run_of: Any) -> None:
    run, route = run_of(["pass", "pass", "pass", "pass", "fail", "error"])
    s = summary_of(run, route)
    assert s.metrics["verification_pass_rate"] == Decimal(4) / Decimal(6)
    assert s.metrics["error_rate"] == Decimal(1) / Decimal(6)
    assert s.metrics["latency_p95_ms"] == Decimal("500.0")  # the error's 5 ms is left out
    ticket_criteria = [criterion("verification_pass_rate", "at_least", str(Decimal(4) / Decimal(6))), criterion("error_rate", "at_most", "0.2")]
    assert judge(ticket_criteria, s).met


@pytest.mark.django_db
def test_it_leaves_cases_kept_from_a_route_out_and_says_so(run_of: Any) -> None:
    run, route = run_of(["not_run", "not_run"])
    s = summary_of(run, route)
    result = evaluate(criterion("verification_pass_rate", "at_least", "0"), s)
    assert not result.evaluable
    assert result.reason == "not evaluable: every case was kept from this route (privacy)"


@pytest.mark.django_db
def test_it_validates_thresholds(ticket: Ticket) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="between 0 and 1"):
        AcceptanceCriterion(ticket=ticket, metric="error_rate", comparison="at_most", threshold=Decimal("5")).full_clean()
    with pytest.raises(ValidationError, match="negative"):
        AcceptanceCriterion(ticket=ticket, metric="latency_p95_ms", comparison="at_most", threshold=Decimal("-1")).full_clean()
    AcceptanceCriterion(ticket=ticket, metric="latency_p95_ms", comparison="at_most", threshold=Decimal("1500")).full_clean()
