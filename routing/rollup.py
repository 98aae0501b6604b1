"""Hourly rollups of the route log, so the dashboard reads a few hundred rows for a day or a
week instead of every call in it.

Each hour is rolled up into one RouteLogHour row per (capability, outcome) that had calls (how
many, their cost, a latency histogram) and one RollupHour row (the hour's attempts per backend,
and when it was rolled up). The dashboard reads whole hours whose rollup is final from these
tables, and everything else of its window (the partial hours at both ends, hours not rolled up
yet) from RouteLog, so its counts and costs are always exact.

When an hour is final: route logs are written with created_at = now, so once an hour has ended
nothing new lands in it, except writes that were in flight at its end. A rollup made less than
RollupHour.GRACE after the hour's end is therefore provisional: the dashboard ignores it and
the next catch_up recomputes it. A streamed call's row is completed when the stream ends,
which may be after its hour was rolled up: the executor then calls `invalidate`, and the hour
is recomputed.

Who rolls up: the periodic task routing.tasks.roll_up_recent (Celery beat, every minute), the
dashboard itself before reading (catch_up: at most CATCH_UP_LIMIT hours per request, and none
while another roll-up runs; the page is right either way, this keeps it fast without a beat),
and `manage.py rollup_route_logs` for a backfill or a repair. Rolling up is idempotent: it
recomputes the hours from RouteLog and replaces their rows, one roll-up at a time.

Latency percentiles from histograms: bucket 0 holds latencies below LATENCY_FLOOR_MS; bucket
i >= 1 holds [FLOOR * RATIO**(i-1), FLOOR * RATIO**i). A percentile is estimated as
percentile_cont would compute it, with each order statistic replaced by the geometric middle
of its bucket, so the estimate is within sqrt(RATIO) - 1 (2.47%) of the exact value, plus
FLOOR / 2 (0.005 ms) for latencies below the floor.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from functools import reduce

from django.db import connection, transaction
from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Cast, Floor, Ln, TruncHour
from django.utils import timezone

from routing.models import Attempt, RollupHour, RouteLog, RouteLogHour

HOUR = timedelta(hours=1)
# How far back the periodic task looks: the dashboard's longest window (7 days).
LOOKBACK = timedelta(days=7)
CATCH_UP_LIMIT = 48  # hours rolled up by one dashboard request at most

LATENCY_FLOOR_MS = 0.01
LATENCY_RATIO = 1.05
LATENCY_ERROR = math.sqrt(LATENCY_RATIO) - 1  # relative, for latencies above the floor

# Any constant: the key of the PostgreSQL advisory lock that serializes roll-ups.
_LOCK_KEY = 0x466F_5352_6F6C  # "FoSRol"

Histogram = dict[int, int]  # bucket -> calls


# --- hours -------------------------------------------------------------------------------------


def hour_of(moment: datetime) -> datetime:
    """The start of the (UTC) hour `moment` falls in."""
    return moment.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)


def _next_hour_from(moment: datetime) -> datetime:
    start = hour_of(moment)
    return start if start == moment else start + HOUR


def settled_until(now: datetime) -> datetime:
    """Hours that start before this have ended at least RollupHour.GRACE ago."""
    return hour_of(now - RollupHour.GRACE)


def final_hours(*, since: datetime, until: datetime) -> dict[datetime, RollupHour]:
    """The hours wholly within [since, until) whose rollup is final, by their start."""
    rows = RollupHour.objects.filter(hour__gte=_next_hour_from(since), hour__lte=until - HOUR)
    return {row.hour: row for row in rows if row.is_final()}


# --- latency histograms ------------------------------------------------------------------------


def latency_bucket(latency_ms: float) -> int:
    if latency_ms < LATENCY_FLOOR_MS:
        return 0
    return math.floor(math.log(latency_ms / LATENCY_FLOOR_MS) / math.log(LATENCY_RATIO)) + 1


def _latency_bucket_sql() -> Case:
    """latency_bucket(latency_ms), computed by the database."""
    return Case(
        When(latency_ms__lt=LATENCY_FLOOR_MS, then=Value(0)),
        default=Cast(Floor(Ln(F("latency_ms") / Value(LATENCY_FLOOR_MS)) / Value(math.log(LATENCY_RATIO))), IntegerField())
        + 1,
        output_field=IntegerField(),
    )


def bucket_middle(bucket: int) -> float:
    if bucket <= 0:
        return LATENCY_FLOOR_MS / 2
    return LATENCY_FLOOR_MS * LATENCY_RATIO ** (bucket - 0.5)


def add_histogram(total: Histogram, pairs: Iterable[Iterable[int]]) -> None:
    """Add a stored histogram ([[bucket, calls], ...]) into `total`."""
    for bucket, calls in pairs:
        total[bucket] = total.get(bucket, 0) + calls


def estimate_percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """percentile_cont(fraction) of the latencies a histogram counts, each taken as the middle
    of its bucket: within LATENCY_ERROR of the exact value (see the module's docstring)."""
    total = sum(histogram.values())
    if not total:
        return None
    position = fraction * (total - 1)
    low_rank, high_rank = math.floor(position), math.ceil(position)
    low: float | None = None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if low is None and seen > low_rank:
            low = bucket_middle(bucket)
        if seen > high_rank:
            assert low is not None
            return low + (bucket_middle(bucket) - low) * (position - low_rank)
    raise AssertionError("unreachable: the ranks are below the total")


# --- rolling up --------------------------------------------------------------------------------


Interval = tuple[datetime, datetime | None]  # [start, end); no end: open-ended


def _within(intervals: Iterable[Interval], *, field: str) -> Q:
    conditions = [
        Q(**{f"{field}__gte": start}) & (Q(**{f"{field}__lt": end}) if end is not None else Q())
        for start, end in intervals
    ]
    return reduce(operator.or_, conditions) if conditions else Q(pk__in=[])


def hourly_route_logs(*, intervals: Iterable[Interval]) -> list[RouteLogHour]:
    """RouteLogHour rows (unsaved) for the route logs created within `intervals`: one per hour,
    capability and outcome, from one query grouped by latency bucket too (summed here)."""
    grouped = (
        RouteLog.objects.filter(_within(intervals, field="created_at"))
        .annotate(hour=TruncHour("created_at", tzinfo=dt_timezone.utc), bucket=_latency_bucket_sql())
        .values("hour", "capability", "outcome", "bucket")
        .annotate(calls=Count("id"), cost=Sum("cost_usd"), latency=Sum("latency_ms"))
        .order_by()
    )
    found: dict[tuple[datetime, str, str], RouteLogHour] = {}
    for row in grouped:
        key = (row["hour"], row["capability"], row["outcome"])
        hour = found.get(key)
        if hour is None:
            hour = found[key] = RouteLogHour(
                hour=row["hour"], capability=row["capability"], outcome=row["outcome"],
                calls=0, cost_usd=Decimal("0"), latency_ms_sum=0.0, latency_histogram=[],
            )
        hour.calls += row["calls"]
        hour.cost_usd += row["cost"] or Decimal("0")
        hour.latency_ms_sum += row["latency"] or 0.0
        hour.latency_histogram.append([row["bucket"], row["calls"]])
    for hour in found.values():
        hour.latency_histogram.sort()
    return list(found.values())


def hourly_attempts(*, intervals: Iterable[Interval]) -> dict[datetime, dict[str, list[int]]]:
    """[attempts, errors] per hour and backend, for the attempts of the route logs created
    within `intervals` (an attempt counts in its route log's hour)."""
    rows = (
        Attempt.objects.filter(_within(intervals, field="route_log__created_at"))
        .annotate(hour=TruncHour("route_log__created_at", tzinfo=dt_timezone.utc))
        .values("hour", "backend")
        .annotate(attempts=Count("id"), errors=Count("id", filter=Q(status=Attempt.Status.ERROR)))
        .order_by()
    )
    found: dict[datetime, dict[str, list[int]]] = {}
    for row in rows:
        found.setdefault(row["hour"], {})[row["backend"]] = [row["attempts"], row["errors"]]
    return found


def roll_up(*, since: datetime, until: datetime, now: datetime | None = None, wait: bool = True) -> int:
    """Recompute the rollup of every hour that lies within [since, until) and has ended, from
    RouteLog and Attempt, replacing what was there (idempotent). Returns how many hours.

    Roll-ups take turns; with `wait` false, this one gives up (returns 0) rather than wait
    for another to finish (on PostgreSQL; SQLite's write transactions always wait)."""
    now = now or timezone.now()
    start, end = _next_hour_from(since), min(hour_of(until), hour_of(now))
    if start >= end:
        return 0
    with transaction.atomic():
        if not _lock(wait=wait):
            return 0
        hours = hourly_route_logs(intervals=[(start, end)])
        attempts = hourly_attempts(intervals=[(start, end)])
        RouteLogHour.objects.filter(hour__gte=start, hour__lt=end).delete()
        RollupHour.objects.filter(hour__gte=start, hour__lt=end).delete()
        RouteLogHour.objects.bulk_create(hours, batch_size=500)
        count = (end - start) // HOUR
        RollupHour.objects.bulk_create(
            [
                RollupHour(hour=hour, rolled_at=now, backend_attempts=attempts.get(hour, {}))
                for hour in (start + n * HOUR for n in range(count))
            ],
            batch_size=500,
        )
    return count


def catch_up(
    *, since: datetime, now: datetime | None = None, limit: int | None = CATCH_UP_LIMIT, wait: bool = True
) -> int:
    """Roll up the hours from `since` on that have settled but have no final rollup, the
    newest `limit` of them (None: all). Returns how many hours were rolled up; with `wait`
    false, none while another roll-up is running (see roll_up)."""
    now = now or timezone.now()
    start, end = _next_hour_from(since), settled_until(now)
    if start >= end:
        return 0
    final = final_hours(since=start, until=end)
    missing = [hour for hour in (start + n * HOUR for n in range((end - start) // HOUR)) if hour not in final]
    if limit is not None:
        missing = missing[-limit:] if limit else []
    rolled = 0
    for first, last in _runs(missing):
        rolled += roll_up(since=first, until=last + HOUR, now=now, wait=wait)
    return rolled


def _runs(hours: list[datetime]) -> Iterable[tuple[datetime, datetime]]:
    """Consecutive hours as (first, last) pairs, so each run is rolled up in one go."""
    run_start = previous = None
    for hour in hours:
        if previous is not None and hour - previous != HOUR:
            yield run_start, previous  # type: ignore[misc]
            run_start = None
        if run_start is None:
            run_start = hour
        previous = hour
    if run_start is not None:
        yield run_start, previous  # type: ignore[misc]


def invalidate(*, created_at: datetime, now: datetime | None = None) -> None:
    """A route log created at `created_at` changed after the fact (a streamed call completed).
    If its hour has ended, drop the hour's rollup so it is read from RouteLog and recomputed."""
    now = now or timezone.now()
    hour = hour_of(created_at)
    if now < hour + HOUR:
        return  # not rolled up yet: nothing to drop
    with transaction.atomic():
        # Waits for a roll-up in progress, which may have read the row before the change.
        _lock(wait=True)
        RollupHour.objects.filter(hour=hour).delete()


def _lock(*, wait: bool) -> bool:
    """Serialize roll-ups with each other and with invalidate, until the transaction ends;
    False if `wait` is false and another holds the lock. SQLite needs nothing: its write
    transactions (BEGIN IMMEDIATE in settings) already take turns."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        return bool(cursor.fetchone()[0])
