"""Comparison runs: routes side by side on the same evaluation cases.

A run calls each route's backend through the same adapters and verification as live traffic,
but it is evaluation, not traffic: it writes no route log and leaves the circuit breakers
alone. Each cell (one case on one route) becomes one `ComparisonResult`.

The privacy boundary holds inside a run as it does in the router: a private case, or any case
of a local_only capability, never goes to a hosted backend; the cell is recorded as not run,
with the reason.

Running is idempotent and restartable:

- a worker claims a run with a compare-and-set (queued -> running, with a fresh `claim`
  token), so two deliveries of the same task do not both run it;
- while it runs, the worker proves it is alive by moving `heartbeat_at`; a run whose heartbeat
  is older than `stale_after_s()` may be resumed (and a delivered task takes it over);
- results are unique per (run, case, route) and a (re)started run only calls the cells that
  have none, so a worker killed mid-run leaves no duplicate when the run resumes;
- cancelling sets the status; the worker sees it after the cell in hand and starts no other.

Calls run on a small thread pool (`CONCURRENCY` cells in flight); every database write stays
on the task's own thread.

Metrics per route (`summarize`), each None with a reason when it cannot be measured:

- verification_pass_rate: cells whose answer passed verification / cells run on the route;
- error_rate: cells where the backend gave no answer (any error before verification) / cells
  run; failed verifications count against the pass rate, not here;
- latency_p50_ms, latency_p95_ms: nearest-rank percentiles over the cells that answered
  (errors are left out: a fast failure would flatter the route);
- mean_cost_usd: total cost / cells run (errors usually cost nothing, and count);
- fallback_rate: cases where this route did not pass and a route after it in the run's order
  did, / cells run on this route: how often the compared fallbacks would have had to rescue
  it (always 0 for the last route);
- agreement_with_baseline: of the cases the baseline route answered and this route was run
  on, the fraction where this route answered the same text (stripped, case-folded).

Cells not run (privacy) are left out of every denominator.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from registry.models import Backend, Capability, Route
from registry.policy import backend_policy, capability_policy
from routing.adapters import get_adapter
from routing.adapters.base import AdapterError, BackendSpec
from routing.executor import normalize_input
from routing.models import ComparisonResult, ComparisonRun, EvaluationCase
from routing.planner import CapabilitySpec
from routing.redaction import redact
from routing.verification import verify

log = logging.getLogger(__name__)

# Cells in flight at once within one run: enough to overlap slow providers, few enough not to
# look like a load test to any one of them.
CONCURRENCY = 4
# How often (seconds) a running worker moves the heartbeat even while every cell is slow.
HEARTBEAT_S = 2.0
# A running run whose heartbeat is older than this may be resumed (its worker is presumed dead).
DEFAULT_STALE_AFTER_S = 60.0
MIN_ROUTES = 2
MAX_ROUTES = 6

METRICS = (
    "verification_pass_rate",
    "latency_p95_ms",
    "mean_cost_usd",
    "error_rate",
    "fallback_rate",
    "agreement_with_baseline",
)


class ComparisonError(ValueError):
    """A run that cannot be created as asked; the message says why."""


def stale_after_s() -> float:
    return float(getattr(settings, "FOS_COMPARISON_STALE_S", DEFAULT_STALE_AFTER_S))


# --- creating, cancelling, resuming -------------------------------------------------------------


def role_of(route: Route, active: list[int]) -> str:
    """How a route stands in the policy: primary, fallback N, or its status (proposed, ...)."""
    if route.status == Route.Status.ACTIVE and route.pk in active:
        index = active.index(route.pk)
        return "primary" if index == 0 else f"fallback {index}"
    return str(route.status)


def create_run(
    *,
    capability: Capability,
    routes: list[Route],
    cases: list[EvaluationCase],
    baseline: Route | None = None,
    ticket_ref: str = "",
    created_by: Any = None,
) -> ComparisonRun:
    """Freeze `routes` (in this order) and the contract into a queued run over `cases`, and queue
    its task once the caller's transaction commits. `baseline` defaults to the capability's
    current primary when it is compared, else the first route."""
    if not MIN_ROUTES <= len(routes) <= MAX_ROUTES:
        raise ComparisonError(f"compare between {MIN_ROUTES} and {MAX_ROUTES} routes")
    if len({route.pk for route in routes}) != len(routes):
        raise ComparisonError("a route is listed twice")
    if any(route.capability_id != capability.pk for route in routes):
        raise ComparisonError(f"every route must belong to {capability.slug}")
    if not cases:
        raise ComparisonError(f"{capability.slug} has no evaluation cases to run")
    if any(case.capability_id != capability.pk for case in cases):
        raise ComparisonError(f"every case must belong to {capability.slug}")
    active = list(
        capability.routes.filter(status=Route.Status.ACTIVE).order_by("position", "id").values_list("pk", flat=True)
    )
    if baseline is None:
        baseline = next((r for r in routes if active and r.pk == active[0]), routes[0])
    elif baseline.pk not in {route.pk for route in routes}:
        raise ComparisonError("the baseline must be one of the compared routes")
    backends = {b.pk: b for b in Backend.objects.filter(pk__in=[route.backend_id for route in routes])}
    lanes = [
        {
            "route": route.pk,
            "backend": backends[route.backend_id].slug,
            "position": route.position,
            "role": role_of(route, active),
            "spec": backend_policy(backends[route.backend_id]),
        }
        for route in routes
    ]
    run = ComparisonRun.objects.create(
        capability=capability,
        ticket_ref=ticket_ref,
        routes=lanes,
        contract=capability_policy(capability, [lane["backend"] for lane in lanes]),
        baseline_route=baseline,
        cells_total=len(cases) * len(routes),
        created_by=created_by,
    )
    run.cases.set(cases)
    enqueue(run_id=run.pk)
    return run


def enqueue(*, run_id: int) -> None:
    """Queue the run's task when the current transaction commits (at once outside one)."""
    from routing.comparison_tasks import run_comparison_task

    # robust: a broker outage must not turn a saved run into a 500; the run stays queued and
    # the page offers to queue it again.
    if settings.FOS_COMPARISONS_IN_THREAD:
        transaction.on_commit(lambda: start_in_thread(run_id=run_id), robust=True)
    else:
        transaction.on_commit(lambda: run_comparison_task.delay(run_id), robust=True)


def start_in_thread(*, run_id: int) -> threading.Thread:
    """Run the comparison in a daemon thread of this process (the embedded default has no
    worker). A thread that dies with the process leaves a stale run, which the page offers to
    resume, as it does for a worker that died."""

    def work() -> None:
        try:
            execute_run(run_id=run_id)
        except Exception:
            log.exception("comparison run %s could not start", run_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name=f"comparison-run-{run_id}", daemon=True)
    thread.start()
    return thread


def cancel_run(*, run_id: int) -> bool:
    """Cancel a queued or running run. The worker stops after the cells in hand."""
    return bool(
        ComparisonRun.objects.filter(pk=run_id, status__in=[ComparisonRun.Status.QUEUED, ComparisonRun.Status.RUNNING]).update(
            status=ComparisonRun.Status.CANCELLED, claim="", finished_at=timezone.now()
        )
    )


def can_resume(run: ComparisonRun, *, now: Any = None) -> bool:
    """Cancelled and failed runs may be resumed; so may a running one whose worker stopped
    beating, and a queued one no worker has picked up for as long."""
    if run.status in (ComparisonRun.Status.CANCELLED, ComparisonRun.Status.FAILED):
        return True
    if run.status in (ComparisonRun.Status.RUNNING, ComparisonRun.Status.QUEUED):
        return is_stale(run, now=now)
    return False


def is_stale(run: ComparisonRun, *, now: Any = None) -> bool:
    if run.is_finished:
        return False
    last = run.heartbeat_at or run.created_at
    return last is not None and (now or timezone.now()) - last > timedelta(seconds=stale_after_s())


def resume_run(*, run: ComparisonRun) -> bool:
    """Put a resumable run back in the queue; its cells that have a result are not run again."""
    if not can_resume(run):
        return False
    stale = timezone.now() - timedelta(seconds=stale_after_s())
    resumable = Q(status__in=[ComparisonRun.Status.CANCELLED, ComparisonRun.Status.FAILED]) | Q(
        status__in=[ComparisonRun.Status.RUNNING, ComparisonRun.Status.QUEUED],
        heartbeat_at__lt=stale,
    ) | Q(status=ComparisonRun.Status.QUEUED, heartbeat_at__isnull=True, created_at__lt=stale)
    # Compare-and-set on the state just read, so two people pressing Resume queue it once.
    # heartbeat_at doubles as "queued at" until a worker claims the run again.
    updated = ComparisonRun.objects.filter(resumable, pk=run.pk, status=run.status, claim=run.claim).update(
        status=ComparisonRun.Status.QUEUED, claim="", error="", finished_at=None, heartbeat_at=timezone.now()
    )
    if updated:
        enqueue(run_id=run.pk)
    return bool(updated)


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """What one call gave, before it is written."""

    status: str
    output: str = ""
    verification: dict[str, Any] | None = None
    passed: bool | None = None
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal("0")
    error_class: str = ""
    detail: str = ""


@dataclass(frozen=True)
class _Lane:
    route_id: int
    spec: BackendSpec


def not_run_reason(*, privacy: str, private_case: bool, locality: str) -> str:
    """Why a cell must not be sent, or "" when it may."""
    if locality == Backend.Locality.LOCAL:
        return ""
    if private_case:
        return "not run: private case, never sent to a hosted backend"
    if privacy == Capability.Privacy.LOCAL_ONLY:
        return "not run: the capability is local_only, never sent to a hosted backend"
    return ""


def call_cell(*, spec: BackendSpec, contract: CapabilitySpec, text: str) -> Cell:
    """Call one backend with one case and verify the answer. Runs on a pool thread: no database."""
    timeout = min(spec.timeout_s, contract.latency_budget_ms / 1000)
    started = time.perf_counter()
    try:
        completion = get_adapter(spec).complete(
            messages=normalize_input(text), instructions=contract.instructions, timeout=timeout
        )
    except AdapterError as exc:
        return Cell(
            status=ComparisonResult.Status.ERROR,
            latency_ms=_elapsed(started),
            error_class=exc.error_class,
            detail=redact(exc.detail).text[:500],
        )
    except Exception as exc:  # a bug in an adapter must not stop the run, nor leak what it held
        log.exception("adapter %s raised unexpectedly in a comparison", spec.adapter)
        return Cell(
            status=ComparisonResult.Status.ERROR,
            latency_ms=_elapsed(started),
            error_class="bad_response",
            detail=f"adapter error ({type(exc).__name__})",
        )
    latency = _elapsed(started)
    result = verify(rule=contract.verify, output=completion.text)
    return Cell(
        status=ComparisonResult.Status.OK,
        output=completion.text,
        verification=result.as_dict(),
        passed=result.passed,
        latency_ms=latency,
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        cost_usd=spec.cost(completion.tokens_in, completion.tokens_out),
        error_class="" if result.passed else "verification_failed",
        detail="" if result.passed else result.detail,
    )


def _elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def execute_run(*, run_id: int) -> str:
    """Claim the run and call every cell that has no result yet. Returns the run's status as
    this worker leaves it ("skipped" when it did not get the run)."""
    token = _claim(run_id)
    if token is None:
        return "skipped"
    run = ComparisonRun.objects.select_related("capability").get(pk=run_id)
    try:
        finished = _run_cells(run, token)
    except Exception as exc:
        log.exception("comparison run %s failed", run_id)
        ComparisonRun.objects.filter(pk=run_id, status=ComparisonRun.Status.RUNNING, claim=token).update(
            status=ComparisonRun.Status.FAILED, error=f"the run stopped: {type(exc).__name__}"[:300], finished_at=timezone.now()
        )
        return ComparisonRun.Status.FAILED
    if finished and ComparisonRun.objects.filter(pk=run_id, status=ComparisonRun.Status.RUNNING, claim=token).update(
        status=ComparisonRun.Status.DONE, finished_at=timezone.now(), heartbeat_at=timezone.now()
    ):
        return ComparisonRun.Status.DONE
    return ComparisonRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "skipped"


def _claim(run_id: int) -> str | None:
    """A fresh claim token if this worker now holds the run, else None."""
    token = uuid.uuid4().hex
    now = timezone.now()
    claimed = ComparisonRun.objects.filter(pk=run_id, status=ComparisonRun.Status.QUEUED).update(
        status=ComparisonRun.Status.RUNNING, claim=token, heartbeat_at=now, started_at=Coalesce("started_at", now)
    )
    if claimed:
        return token
    # A running run whose worker stopped beating (killed, say) is taken over, on the claim
    # that was read, so of two deliveries only one takes it.
    current = ComparisonRun.objects.filter(pk=run_id, status=ComparisonRun.Status.RUNNING).values("claim", "heartbeat_at").first()
    if current is None or (current["heartbeat_at"] and now - current["heartbeat_at"] <= timedelta(seconds=stale_after_s())):
        return None
    taken = ComparisonRun.objects.filter(
        pk=run_id, status=ComparisonRun.Status.RUNNING, claim=current["claim"], heartbeat_at=current["heartbeat_at"]
    ).update(claim=token, heartbeat_at=now)
    return token if taken else None


def _beat(run_id: int, token: str) -> bool:
    """Move the heartbeat; False when the run is no longer ours (cancelled, or taken over)."""
    return bool(
        ComparisonRun.objects.filter(pk=run_id, status=ComparisonRun.Status.RUNNING, claim=token).update(
            heartbeat_at=timezone.now()
        )
    )


def _run_cells(run: ComparisonRun, token: str) -> bool:
    """Call the cells without a result, CONCURRENCY at a time. True when every cell was done,
    False when the run was cancelled or taken over on the way."""
    contract = CapabilitySpec.from_policy(run.capability.slug, run.contract)
    lanes = [_Lane(lane["route"], BackendSpec.from_policy(lane["backend"], lane["spec"])) for lane in run.routes]
    done = set(ComparisonResult.objects.filter(run=run).values_list("case_id", "route_id"))
    pending = iter(
        [(case, lane) for case in run.cases.order_by("id") for lane in lanes if (case.pk, lane.route_id) not in done]
    )
    ours = True
    last_beat = time.monotonic()
    in_flight: dict[Future[Cell], tuple[EvaluationCase, _Lane]] = {}
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix=f"comparison-{run.pk}") as pool:
        while True:
            while ours and len(in_flight) < CONCURRENCY:
                item = next(pending, None)
                if item is None:
                    break
                case, lane = item
                reason = not_run_reason(privacy=contract.privacy, private_case=case.private, locality=lane.spec.locality)
                if reason:
                    _save(run, case, lane, Cell(status=ComparisonResult.Status.NOT_RUN, detail=reason))
                    continue
                future = pool.submit(call_cell, spec=lane.spec, contract=contract, text=case.input)
                in_flight[future] = item
            if not in_flight:
                break
            finished, _ = wait(in_flight, timeout=HEARTBEAT_S, return_when=FIRST_COMPLETED)
            for future in finished:
                case, lane = in_flight.pop(future)
                _save(run, case, lane, future.result())
            if finished or time.monotonic() - last_beat >= HEARTBEAT_S:
                # Between cells: a cancel (or a takeover) stops new cells from starting; the
                # ones in flight finish and are kept.
                ours = ours and _beat(run.pk, token)
                last_beat = time.monotonic()
    return ours and next(pending, None) is None


def _save(run: ComparisonRun, case: EvaluationCase, lane: _Lane, cell: Cell) -> None:
    # ignore_conflicts: if another worker wrote this cell first, its row stands.
    ComparisonResult.objects.bulk_create(
        [
            ComparisonResult(
                run=run,
                case=case,
                route_id=lane.route_id,
                backend=lane.spec.slug,
                locality=lane.spec.locality,
                status=cell.status,
                output=cell.output,
                private=case.private,
                verification=cell.verification,
                passed=cell.passed,
                latency_ms=cell.latency_ms,
                tokens_in=cell.tokens_in,
                tokens_out=cell.tokens_out,
                cost_usd=cell.cost_usd,
                error_class=cell.error_class,
                detail=cell.detail,
            )
        ],
        ignore_conflicts=True,
    )


# --- reading: progress, the side-by-side grid, per-route summaries ------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)


def progress(run: ComparisonRun) -> Progress:
    return Progress(done=ComparisonResult.objects.filter(run=run).count(), total=run.cells_total)


def same_answer(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


INSPECTABILITY = {
    "tool": ("full", "fully inspectable: a deterministic tool whose whole behaviour is its config"),
    "local": ("inspectable", "inspectable: a local model whose weights can be examined and traces kept"),
    "hosted": ("opaque", "opaque beyond its answers: a hosted model"),
}


def inspectability(*, adapter: str, locality: str) -> tuple[str, str]:
    """(level, explanation) for a backend, from its adapter and locality."""
    if adapter == Backend.Adapter.TOOL:
        return INSPECTABILITY["tool"]
    return INSPECTABILITY["local" if locality == Backend.Locality.LOCAL else "hosted"]


@dataclass
class GridCell:
    result: ComparisonResult | None
    differs: bool = False  # answered, and not what the baseline answered
    matches_expected: bool | None = None


@dataclass
class GridRow:
    case: EvaluationCase
    cells: list[GridCell]


def grid(run: ComparisonRun, results: list[ComparisonResult], cases: list[EvaluationCase]) -> list[GridRow]:
    """One row per case, one cell per route in the run's order (None: not done yet)."""
    by_cell = {(r.case_id, r.route_id): r for r in results}
    baseline = run.baseline_route_id
    rows = []
    for case in cases:
        base = by_cell.get((case.pk, baseline))
        cells = []
        for route_id in run.route_ids:
            result = by_cell.get((case.pk, route_id))
            cell = GridCell(result)
            if result is not None and result.status == ComparisonResult.Status.OK:
                if route_id != baseline and base is not None and base.status == ComparisonResult.Status.OK:
                    cell.differs = not same_answer(result.output, base.output)
                if case.expected:
                    cell.matches_expected = same_answer(result.output, case.expected)
            cells.append(cell)
        rows.append(GridRow(case, cells))
    return rows


@dataclass
class RouteSummary:
    route_id: int
    backend: str
    role: str
    adapter: str
    locality: str
    is_baseline: bool
    inspectability: tuple[str, str]
    cases: int = 0
    run: int = 0
    not_run: int = 0
    answered: int = 0
    passed: int = 0
    errors_by_class: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: Decimal | None = None
    metrics: dict[str, Decimal | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why a metric is None


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _ratio(part: int, whole: int) -> Decimal:
    return Decimal(part) / Decimal(whole)


def _ms(value: float) -> Decimal:
    return Decimal(str(round(value, 3)))


def summarize(run: ComparisonRun, results: list[ComparisonResult]) -> list[RouteSummary]:
    """Per route, in the run's order: counts, errors by class and the METRICS (see the module
    docstring for their definitions)."""
    by_route: dict[int, dict[int, ComparisonResult]] = {route_id: {} for route_id in run.route_ids}
    for result in results:
        by_route.setdefault(result.route_id, {})[result.case_id] = result
    order = run.route_ids
    baseline = by_route.get(run.baseline_route_id or -1, {})
    summaries = []
    for index, lane in enumerate(run.routes):
        cells = by_route[lane["route"]]
        ran = [c for c in cells.values() if c.status != ComparisonResult.Status.NOT_RUN]
        answered = [c for c in ran if c.status == ComparisonResult.Status.OK]
        spec = lane["spec"]
        summary = RouteSummary(
            route_id=lane["route"],
            backend=lane["backend"],
            role=lane.get("role", ""),
            adapter=spec.get("adapter", ""),
            locality=spec.get("locality", ""),
            is_baseline=lane["route"] == run.baseline_route_id,
            inspectability=inspectability(adapter=spec.get("adapter", ""), locality=spec.get("locality", "")),
            cases=len(cells),
            run=len(ran),
            not_run=len(cells) - len(ran),
            answered=len(answered),
            passed=sum(1 for c in ran if c.passed),
            errors_by_class=dict(sorted(Counter(c.error_class for c in ran if c.error_class).items())),
        )
        metrics: dict[str, Decimal | None] = dict.fromkeys(METRICS)
        reasons: dict[str, str] = {}
        if ran:
            metrics["verification_pass_rate"] = _ratio(summary.passed, len(ran))
            metrics["error_rate"] = _ratio(sum(1 for c in ran if c.status == ComparisonResult.Status.ERROR), len(ran))
            metrics["mean_cost_usd"] = sum((c.cost_usd for c in ran), Decimal("0")) / len(ran)
            later = [by_route[route_id] for route_id in order[index + 1 :]]
            rescued = sum(
                1 for c in ran if not c.passed and any(other.get(c.case_id) and other[c.case_id].passed for other in later)
            )
            metrics["fallback_rate"] = _ratio(rescued, len(ran))
        else:
            why = "no case was run on this route" if not cells else "every case was kept from this route (privacy)"
            for name in ("verification_pass_rate", "error_rate", "mean_cost_usd", "fallback_rate"):
                reasons[name] = why
        latencies = [c.latency_ms for c in answered if c.latency_ms is not None]
        if latencies:
            summary.latency_p50_ms = _ms(percentile(latencies, 50))
            metrics["latency_p95_ms"] = _ms(percentile(latencies, 95))
        else:
            reasons["latency_p95_ms"] = "no case was answered by this route"
        if run.baseline_route_id is None:
            reasons["agreement_with_baseline"] = "the run has no baseline route"
        else:
            shared = [
                (c, baseline[c.case_id])
                for c in ran
                if c.case_id in baseline and baseline[c.case_id].status == ComparisonResult.Status.OK
            ]
            if shared:
                agree = sum(
                    1 for c, base in shared if c.status == ComparisonResult.Status.OK and same_answer(c.output, base.output)
                )
                metrics["agreement_with_baseline"] = _ratio(agree, len(shared))
            else:
                reasons["agreement_with_baseline"] = "the baseline answered none of the cases run on this route"
        summary.metrics, summary.reasons = metrics, reasons
        summaries.append(summary)
    return summaries
