"""What the console reads out of the route log: the dashboard's figures and the route log's pages.

Every query here is bounded, so the pages stay fast with millions of rows:

- The route log is paged by keyset on (created_at, id), newest first, through the RouteLog
  indexes (time; capability, outcome, backend or caller with time). It never counts the table
  and never uses OFFSET: a page costs the same at the millionth row as at the first.
- The dashboard aggregates only the rows of its window (created_at >= now - window), grouped
  in SQL. Latency percentiles are exact on PostgreSQL (percentile_cont, in the same GROUP BY).
  SQLite has no percentile aggregate, so there they are computed in Python over a bounded
  sample: the newest `SQLITE_PERCENTILE_SAMPLE` calls of the window per capability, and for
  the chart that many shared out between its time buckets. That is exact for the embedded
  default's volumes and an estimate beyond; the page says when.
- Windows of whole-hour chart columns (24 hours, 7 days) read the hours whose rollup is final
  (routing.rollup) from RouteLogHour and RollupHour, and only the rest of the window from
  RouteLog: the partial hours at both ends and any hour not rolled up yet. Counts and costs
  stay exact; latency percentiles come from the merged hourly histograms, estimated within
  rollup.LATENCY_ERROR (2.5%) on either database, and the page says so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Func, IntegerField, Min, Q, QuerySet, Sum
from django.utils import timezone

from routing import breaker, planner, rollup
from routing.models import Attempt, RollupHour, RouteLog, RouteLogHour

PAGE_SIZE = 50
SQLITE_PERCENTILE_SAMPLE = 10_000
OUTCOMES = tuple(RouteLog.Outcome.values)  # primary, fallback, failed, rejected
EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: timedelta
    bucket: timedelta  # the charts' column width

    @property
    def bucket_label(self) -> str:
        minutes = int(self.bucket.total_seconds() // 60)
        return f"{minutes} minutes" if minutes < 60 else "hour" if minutes == 60 else f"{minutes // 60} hours"


WINDOWS = {
    "1h": Window("1h", "last hour", timedelta(hours=1), timedelta(minutes=5)),
    "24h": Window("24h", "last 24 hours", timedelta(hours=24), timedelta(hours=1)),
    "7d": Window("7d", "last 7 days", timedelta(days=7), timedelta(hours=6)),
}
DEFAULT_WINDOW = "24h"


# --- percentiles -------------------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(ARRAY[fractions]) WITHIN GROUP (ORDER BY expression): the
    percentiles as one array, from one sort of the group's values."""

    function = "percentile_cont"
    template = "%(function)s(ARRAY[%(fractions)s]::float8[]) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, *, fractions: tuple[float, ...], **extra: Any) -> None:
        if not fractions or not all(0 <= f <= 1 for f in fractions):
            raise ValueError("fractions must be between 0 and 1")
        super().__init__(
            expression,
            fractions=", ".join(repr(float(f)) for f in fractions),
            output_field=ArrayField(FloatField()),
            **extra,
        )


def percentile(values: list[float], fraction: float) -> float | None:
    """percentile_cont over a list: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class EpochBucket(Func):
    """The number of the `seconds`-wide time bucket a timestamp falls in, counted from 1970."""

    output_field = IntegerField()

    def __init__(self, expression: Any, *, seconds: int) -> None:
        super().__init__(expression, seconds=int(seconds))

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # date_part gives a float8; extract() gives a numeric, whose division costs more per row.
        template = "floor(date_part('epoch', %(expressions)s) / %(seconds)s)::bigint"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # julianday() avoids strftime('%s'), whose percent sign the parameter style would eat;
        # rounding to the millisecond first keeps a row on a bucket's edge in that bucket.
        template = "CAST(round((julianday(%(expressions)s) - 2440587.5) * 86400000.0) / (%(seconds)s * 1000) AS INTEGER)"
        return self.as_sql(compiler, connection, template=template, **extra)


# --- the dashboard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CapabilityStats:
    slug: str
    calls: int = 0
    fallbacks: int = 0
    failures: int = 0
    rejected: int = 0
    cost: Decimal = Decimal("0")
    p50_ms: float | None = None
    p95_ms: float | None = None
    in_policy: bool = True

    @property
    def fallback_percent(self) -> float | None:
        return 100 * self.fallbacks / self.calls if self.calls else None

    @property
    def failure_percent(self) -> float | None:
        return 100 * self.failures / self.calls if self.calls else None


@dataclass(frozen=True)
class BackendHealth:
    slug: str
    attempts: int
    errors: int
    circuit: breaker.BreakerState
    in_policy: bool = True

    @property
    def error_percent(self) -> float | None:
        return 100 * self.errors / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    counts: dict[str, int]
    p95_ms: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Dashboard:
    window: Window
    since: datetime
    now: datetime
    has_policy: bool
    capabilities: list[CapabilityStats]
    backends: list[BackendHealth]
    buckets: list[Bucket]
    percentiles_sampled: bool = False  # SQLite, with more calls in the window than the sample
    percentiles_estimated: bool = False  # from the rollup's histograms

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.capabilities)

    @property
    def percentile_error_percent(self) -> float:
        return 100 * rollup.LATENCY_ERROR


def dashboard(*, window: Window, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    since = now - window.span
    snapshot = planner.load_snapshot()
    policy = list(snapshot.capabilities)
    # The rollup has whole hours: it serves only windows whose chart columns are whole hours.
    rolled = rollup.final_hours(since=since, until=now) if window.bucket % rollup.HOUR == timedelta(0) else {}
    if rolled:
        hours, attempts = _window_hours(rolled=rolled, since=since)
        found, sampled, estimated = _capability_figures_from_hours(hours), False, True
        grouped = _bucket_figures_from_hours(hours, window=window)
    else:
        in_window = RouteLog.objects.filter(created_at__gte=since)
        found, first_id, sampled = _capability_figures(in_window)
        grouped, sampled_chart = _bucket_figures(in_window, window=window)
        attempts, sampled, estimated = _attempts_from(first_id=first_id), sampled or sampled_chart, False
    return Dashboard(
        window=window,
        since=since,
        now=now,
        has_policy=bool(snapshot.capabilities or snapshot.backends),
        capabilities=_capability_stats(found, policy=policy),
        backends=_backend_health(attempts, policy=list(snapshot.backends)),
        buckets=_buckets(grouped, window=window, since=since, now=now),
        percentiles_sampled=sampled,
        percentiles_estimated=estimated,
    )


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def _capability_figures(rows: QuerySet[RouteLog]) -> tuple[dict[str, dict[str, Any]], int | None, bool]:
    """Per capability: calls by outcome, cost, latency p50/p95; plus the window's first route
    log id (see _attempts_from) and whether the percentiles were sampled."""
    # A rejected call never reached a backend: it counts as a call but not towards latency.
    answered = ~Q(outcome=RouteLog.Outcome.REJECTED)
    aggregates: dict[str, Any] = {
        "first_id": Min("id"),
        "calls": Count("id"),
        "fallbacks": Count("id", filter=Q(outcome=RouteLog.Outcome.FALLBACK)),
        "failures": Count("id", filter=Q(outcome=RouteLog.Outcome.FAILED)),
        "rejected": Count("id", filter=Q(outcome=RouteLog.Outcome.REJECTED)),
        "cost": Sum("cost_usd"),
    }
    if _postgresql():
        aggregates["latency"] = PercentileCont("latency_ms", fractions=(0.5, 0.95), filter=answered)
    found = {row["capability"]: row for row in rows.values("capability").annotate(**aggregates).order_by()}
    sampled = False
    if _postgresql():
        for row in found.values():
            row["p50_ms"], row["p95_ms"] = row["latency"] or (None, None)
    else:
        for slug, row in found.items():
            latencies = list(
                rows.filter(answered, capability=slug)
                .order_by("-created_at")
                .values_list("latency_ms", flat=True)[:SQLITE_PERCENTILE_SAMPLE]
            )
            sampled |= row["calls"] - row["rejected"] > len(latencies)
            row["p50_ms"], row["p95_ms"] = percentile(latencies, 0.5), percentile(latencies, 0.95)
    first_id = min((row["first_id"] for row in found.values()), default=None)
    return found, first_id, sampled


def _window_hours(
    *, rolled: dict[datetime, RollupHour], since: datetime
) -> tuple[list[RouteLogHour], dict[str, tuple[int, int]]]:
    """The window's route logs as hourly rows, and its [attempts, errors] per backend: the
    rolled-up hours from the rollup, the rest of the window (the partial hours at both ends,
    any hour not rolled up yet) computed from RouteLog and Attempt."""
    rows = RouteLogHour.objects.filter(hour__gte=min(rolled), hour__lte=max(rolled))
    hours = [row for row in rows if row.hour in rolled]
    rest: list[rollup.Interval] = []
    start = since
    for hour in sorted(rolled):
        if hour > start:
            rest.append((start, hour))
        start = hour + rollup.HOUR
    rest.append((start, None))  # no end, as the window of RouteLog rows has none
    hours += rollup.hourly_route_logs(intervals=rest)
    attempts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for per_backend in [*(row.backend_attempts for row in rolled.values()), *rollup.hourly_attempts(intervals=rest).values()]:
        for backend, (tried, failed) in per_backend.items():
            attempts[backend] += tried
            errors[backend] += failed
    return hours, {backend: (attempts[backend], errors[backend]) for backend in attempts}


def _capability_figures_from_hours(hours: list[RouteLogHour]) -> dict[str, dict[str, Any]]:
    """What _capability_figures gives, from hourly rows; percentiles from their histograms."""
    found: dict[str, dict[str, Any]] = {}
    latencies: dict[str, rollup.Histogram] = {}
    for hour in hours:
        row = found.setdefault(hour.capability, {"calls": 0, "cost": Decimal("0"), **dict.fromkeys(OUTCOMES, 0)})
        row["calls"] += hour.calls
        row[hour.outcome] = row.get(hour.outcome, 0) + hour.calls
        row["cost"] += hour.cost_usd
        if hour.outcome != RouteLog.Outcome.REJECTED:
            rollup.add_histogram(latencies.setdefault(hour.capability, {}), hour.latency_histogram)
    for slug, row in found.items():
        row["fallbacks"], row["failures"] = row[RouteLog.Outcome.FALLBACK], row[RouteLog.Outcome.FAILED]
        row["rejected"] = row[RouteLog.Outcome.REJECTED]
        histogram = latencies.get(slug, {})
        row["p50_ms"] = rollup.estimate_percentile(histogram, 0.5)
        row["p95_ms"] = rollup.estimate_percentile(histogram, 0.95)
    return found


def _capability_stats(found: dict[str, dict[str, Any]], *, policy: list[str]) -> list[CapabilityStats]:
    stats = []
    for slug in sorted(set(policy) | set(found)):
        row = found.get(slug)
        if row is None:
            stats.append(CapabilityStats(slug=slug))
            continue
        stats.append(
            CapabilityStats(
                slug=slug,
                calls=row["calls"],
                fallbacks=row["fallbacks"],
                failures=row["failures"],
                rejected=row["rejected"],
                cost=row["cost"] or Decimal("0"),
                p50_ms=row["p50_ms"],
                p95_ms=row["p95_ms"],
                in_policy=slug in policy,
            )
        )
    return stats


def _attempts_from(*, first_id: int | None) -> dict[str, tuple[int, int]]:
    """[attempts, errors] per backend in the window.

    Attempts carry no time of their own. Rather than join them to their route logs (which
    costs more than the rest of the dashboard), this counts the attempts of the route logs
    from the window's first one on, a range of the (route_log, index) index. Route log ids
    grow with time, so that is the window, give or take the few calls at its opening edge
    whose id and time were taken in a different order by concurrent writers."""
    if first_id is None:
        return {}
    rows = (
        Attempt.objects.filter(route_log_id__gte=first_id)
        .values("backend")
        .annotate(attempts=Count("id"), errors=Count("id", filter=Q(status=Attempt.Status.ERROR)))
        .order_by()
    )
    return {row["backend"]: (row["attempts"], row["errors"]) for row in rows}


def _backend_health(counts: dict[str, tuple[int, int]], *, policy: list[str]) -> list[BackendHealth]:
    """Attempts and errors per backend in the window, with each backend's circuit state."""
    slugs = sorted(set(policy) | set(counts))
    circuits = breaker.states(slugs)
    return [
        BackendHealth(
            slug=slug,
            attempts=counts.get(slug, (0, 0))[0],
            errors=counts.get(slug, (0, 0))[1],
            circuit=circuits[slug],
            in_policy=slug in policy,
        )
        for slug in slugs
    ]


def _bucket_figures(rows: QuerySet[RouteLog], *, window: Window) -> tuple[dict[int, dict[str, Any]], bool]:
    """Per chart column (by number): calls by outcome and latency p95; and whether the
    percentiles were sampled."""
    seconds = int(window.bucket.total_seconds())
    aggregates: dict[str, Any] = {
        outcome: Count("id", filter=Q(outcome=outcome)) for outcome in OUTCOMES
    }
    if _postgresql():
        aggregates["p95"] = PercentileCont("latency_ms", fractions=(0.95,), filter=~Q(outcome=RouteLog.Outcome.REJECTED))
    grouped = {
        row["bucket"]: row
        for row in rows.annotate(bucket=EpochBucket("created_at", seconds=seconds))
        .values("bucket")
        .annotate(**aggregates)
        .order_by()
    }
    sampled = False
    if _postgresql():
        for row in grouped.values():
            row["p95_ms"] = row["p95"][0] if row["p95"] else None
    else:
        # The sample is shared out between the buckets, so every column of the chart gets one.
        per_bucket = max(1, SQLITE_PERCENTILE_SAMPLE // max(1, len(grouped)))
        answered = rows.exclude(outcome=RouteLog.Outcome.REJECTED)
        for number, row in grouped.items():
            start = EPOCH + timedelta(seconds=number * seconds)
            latencies = list(
                answered.filter(created_at__gte=start, created_at__lt=start + window.bucket)
                .order_by("-created_at")
                .values_list("latency_ms", flat=True)[:per_bucket]
            )
            row["p95_ms"] = percentile(latencies, 0.95)
            sampled |= sum(row[o] for o in OUTCOMES if o != RouteLog.Outcome.REJECTED) > len(latencies)
    return grouped, sampled


def _bucket_figures_from_hours(hours: list[RouteLogHour], *, window: Window) -> dict[int, dict[str, Any]]:
    """What _bucket_figures gives, from hourly rows (the columns are whole hours)."""
    seconds = int(window.bucket.total_seconds())
    grouped: dict[int, dict[str, Any]] = {}
    latencies: dict[int, rollup.Histogram] = {}
    for hour in hours:
        number = _bucket_number(hour.hour, seconds)
        row = grouped.setdefault(number, dict.fromkeys(OUTCOMES, 0))
        row[hour.outcome] = row.get(hour.outcome, 0) + hour.calls
        if hour.outcome != RouteLog.Outcome.REJECTED:
            rollup.add_histogram(latencies.setdefault(number, {}), hour.latency_histogram)
    for number, row in grouped.items():
        row["p95_ms"] = rollup.estimate_percentile(latencies.get(number, {}), 0.95)
    return grouped


def _buckets(grouped: dict[int, dict[str, Any]], *, window: Window, since: datetime, now: datetime) -> list[Bucket]:
    seconds = int(window.bucket.total_seconds())
    first, last = _bucket_number(since, seconds), _bucket_number(now, seconds)
    buckets = []
    for number in range(first, last + 1):
        row = grouped.get(number, {})
        start = EPOCH + timedelta(seconds=number * seconds)
        buckets.append(
            Bucket(
                start=start,
                end=start + window.bucket,
                counts={outcome: row.get(outcome, 0) for outcome in OUTCOMES},
                p95_ms=row.get("p95_ms"),
            )
        )
    return buckets


def _bucket_number(moment: datetime, seconds: int) -> int:
    return int((moment - EPOCH).total_seconds() // seconds)


# --- the route log -----------------------------------------------------------------------------

_CURSOR = re.compile(r"(\d{1,17})\.(\d{1,19})")


@dataclass(frozen=True)
class Cursor:
    """Where a page of the route log ends: the (created_at, id) of its last (oldest) row."""

    created_at: datetime
    id: int

    def encode(self) -> str:
        return f"{(self.created_at - EPOCH) // timedelta(microseconds=1)}.{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        match = _CURSOR.fullmatch(value)
        if match is None:
            raise ValueError("not a route log cursor")
        try:
            created_at = EPOCH + timedelta(microseconds=int(match.group(1)))
        except OverflowError:
            raise ValueError("not a route log cursor") from None
        return cls(created_at=created_at, id=int(match.group(2)))


@dataclass(frozen=True)
class RouteLogFilters:
    capability: str = ""
    outcome: str = ""
    backend: str = ""
    caller: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, rows: QuerySet[RouteLog]) -> QuerySet[RouteLog]:
        exact = {name: getattr(self, name) for name in ("capability", "outcome", "backend", "caller")}
        rows = rows.filter(**{name: value for name, value in exact.items() if value})
        if self.since is not None:
            rows = rows.filter(created_at__gte=self.since)
        if self.until is not None:
            rows = rows.filter(created_at__lt=self.until)
        return rows


@dataclass(frozen=True)
class RouteLogPage:
    entries: list[RouteLog]
    older: Cursor | None  # where the next (older) page starts; None on the last page


# The table's columns: the page never loads reasons, metadata or the input fingerprint.
ROUTE_LOG_COLUMNS = (
    "id", "created_at", "capability", "outcome", "backend", "caller", "latency_ms", "cost_usd", "fallback_used",
    "error_class",
)


def route_log_page(*, filters: RouteLogFilters, cursor: Cursor | None = None, size: int = PAGE_SIZE) -> RouteLogPage:
    """One page of the route log, newest first, strictly older than `cursor`."""
    rows = filters.apply(RouteLog.objects.only(*ROUTE_LOG_COLUMNS))
    if cursor is not None:
        # The inclusive bound lets the index range start at the cursor; the OR keeps rows that
        # share its timestamp but have a smaller id.
        rows = rows.filter(created_at__lte=cursor.created_at).filter(
            Q(created_at__lt=cursor.created_at) | Q(id__lt=cursor.id)
        )
    entries = list(rows.order_by("-created_at", "-id")[: size + 1])
    older = None
    if len(entries) > size:
        entries = entries[:size]
        older = Cursor(created_at=entries[-1].created_at, id=entries[-1].pk)
    return RouteLogPage(entries=entries, older=older)


# --- reasons -----------------------------------------------------------------------------------


def reason_kind(reason: str) -> str:
    """How a reason line reads at a glance: kept, skipped, failed, answered or note."""
    _, _, verdict = reason.partition(": ")
    for kind in ("kept", "skipped", "failed", "answered"):
        if verdict.startswith(kind):
            return kind
    if reason.startswith(("no route", "no active routes", "not falling back", "rejected")):
        return "failed"
    if ": not tried" in reason:
        return "skipped"
    return "note"


_BADGES = {"kept": "ok", "answered": "ok", "skipped": "warn", "failed": "bad"}


@dataclass(frozen=True)
class Reason:
    text: str
    kind: str = "note"

    @property
    def badge(self) -> str:
        return _BADGES.get(self.kind, "")


def reasons(lines: Iterable[str]) -> list[Reason]:
    return [Reason(text=str(line), kind=reason_kind(str(line))) for line in lines]
