"""Judging a ticket's acceptance criteria against a comparison run.

The metrics themselves are measured by `routing.comparisons.summarize` (see its docstring for
their definitions). Here each criterion is compared with one route's value:

- at_least: met when value >= threshold; at_most: met when value <= threshold. A value equal
  to the threshold meets it. Values are exact decimals (4 of 5 is 0.8, not 0.79999...).
- A criterion whose metric has no value is *not evaluable*, and so not met, with the reason:
  no case was run on the route (none at all, or all kept from it by privacy), no case was
  answered (latency over the answered cases only: every case erroring leaves none), the
  baseline answered nothing, the run has not produced that metric, or the route is not in
  the run.
- A ticket is met by a route when it has at least one criterion and every criterion is met.
  A ticket without criteria has nothing to approve against: it is not met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from routing.comparisons import RouteSummary
from tickets.models import AcceptanceCriterion


@dataclass(frozen=True)
class CriterionResult:
    criterion_id: int | None
    text: str
    metric: str
    comparison: str
    threshold: str
    value: str | None  # the measured value, exact, as text; None when not evaluable
    evaluable: bool
    met: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(criterion: AcceptanceCriterion, summary: RouteSummary | None) -> CriterionResult:
    """Judge one criterion against one route's summary (None: the route is not in the run)."""

    def result(*, value: Decimal | None, met: bool, reason: str) -> CriterionResult:
        return CriterionResult(
            criterion_id=criterion.pk,
            text=str(criterion),
            metric=criterion.metric,
            comparison=criterion.comparison,
            threshold=str(criterion.threshold),
            value=None if value is None else format_value(criterion.metric, value),
            evaluable=value is not None,
            met=met,
            reason=reason,
        )

    if summary is None:
        return result(value=None, met=False, reason="not evaluable: the route is not in this run")
    if criterion.metric not in summary.metrics:
        return result(value=None, met=False, reason=f"not evaluable: the run does not measure {criterion.metric}")
    value = summary.metrics[criterion.metric]
    if value is None:
        why = summary.reasons.get(criterion.metric, "no value")
        return result(value=None, met=False, reason=f"not evaluable: {why}")
    threshold = criterion.threshold
    if criterion.comparison == AcceptanceCriterion.Comparison.AT_LEAST:
        met = value >= threshold
    elif criterion.comparison == AcceptanceCriterion.Comparison.AT_MOST:
        met = value <= threshold
    else:
        return result(value=value, met=False, reason=f"not evaluable: unknown comparison {criterion.comparison!r}")
    shown = format_value(criterion.metric, value)
    relation = "meets" if met else "misses"
    return result(value=value, met=met, reason=f"{shown} {relation} {criterion.get_comparison_display()} {criterion.threshold_text}")


def format_value(metric: str, value: Decimal) -> str:
    if metric in AcceptanceCriterion.RATES:
        return f"{value:.4f}".rstrip("0").rstrip(".") + f" ({value * 100:.1f}%)"
    if metric == AcceptanceCriterion.Metric.LATENCY_P95_MS:
        return f"{value:.1f} ms"
    if metric == AcceptanceCriterion.Metric.MEAN_COST_USD:
        return f"${value:.8f}".rstrip("0").rstrip(".") if value else "$0"
    return str(value)


@dataclass(frozen=True)
class Verdict:
    """A route against all of a ticket's criteria."""

    results: list[CriterionResult]

    @property
    def met(self) -> bool:
        return bool(self.results) and all(r.met for r in self.results)

    @property
    def summary(self) -> str:
        if not self.results:
            return "the ticket has no acceptance criteria"
        missed = [r for r in self.results if not r.met]
        if not missed:
            return f"meets all {len(self.results)} criteria"
        return f"misses {len(missed)} of {len(self.results)} criteria"


def judge(criteria: list[AcceptanceCriterion], summary: RouteSummary | None) -> Verdict:
    return Verdict([evaluate(criterion, summary) for criterion in criteria])
