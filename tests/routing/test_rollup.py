"""The hourly rollup of the route log (routing.rollup) and the dashboard read through it: the
rolled-up figures against the exact queries, idempotence, the grace after an hour's end, the
catch-up bound, invalidation by a late stream, the command and the periodic task."""

from __future__ import annotations

import io
import math
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from routing import executor, rollup, stats, tasks
from routing.models import Attempt, RollupHour, RouteLog, RouteLogHour
from tests.routing.test_console_views import make_log
from tests.routing.test_executor import http_backend

HOUR = rollup.HOUR


def within_bound(estimate: float | None, exact: float | None) -> bool:
    """The error bound the dashboard states for percentiles from histograms."""
    if exact is None or estimate is None:
        return estimate is exact
    return abs(estimate - exact) <= rollup.LATENCY_ERROR * exact + rollup.LATENCY_FLOOR_MS / 2 + 1e-9


@pytest.fixture
def traffic(db: None) -> datetime:
    """About 36 hours of generated calls (synthetic policy), rolled up by the generator."""
    call_command("generate_route_logs", count=3000, days=1.5, seed=11, stdout=io.StringIO())
    return timezone.now()


# --- histograms --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_it_estimates_percentiles_within_the_stated_bound(seed: int) -> None:
    rnd = random.Random(seed)
    medians = [0.004, 0.4, 380.0, 900.0, 30_000.0]
    values = [round(rnd.lognormvariate(math.log(rnd.choice(medians)), 0.6), 3) for _ in range(rnd.randint(1, 3000))]
    histogram = Counter(rollup.latency_bucket(v) for v in values)
    for fraction in (0.0, 0.05, 0.5, 0.95, 0.99, 1.0):
        estimate = rollup.estimate_percentile(histogram, fraction)
        assert within_bound(estimate, stats.percentile(values, fraction)), (fraction, estimate)


def test_it_states_the_error_bound_it_guarantees() -> None:
    assert rollup.LATENCY_ERROR == pytest.approx(0.0247, abs=1e-4)
    assert rollup.estimate_percentile({}, 0.5) is None
    # One value in the underflow bucket: within half the floor of it.
    assert rollup.estimate_percentile({0: 1}, 0.95) == rollup.LATENCY_FLOOR_MS / 2


def test_it_buckets_latencies_in_the_database_as_in_python(db: None) -> None:
    latencies = [0.0, 0.004, 0.01, 0.0107, 0.4, 1.0, 123.456, 999.999, 30_000.0, 600_000.0]
    hour = rollup.hour_of(timezone.now()) - 2 * HOUR
    for latency in latencies:
        make_log(created_at=hour + timedelta(minutes=5), latency_ms=latency)
    rollup.roll_up(since=hour, until=hour + HOUR)
    (row,) = RouteLogHour.objects.all()
    assert row.latency_histogram == sorted(map(list, Counter(map(rollup.latency_bucket, latencies)).items()))
    assert row.latency_ms_sum == pytest.approx(sum(latencies))


# --- rolling up --------------------------------------------------------------------------------


def test_it_rolls_up_counts_and_costs_exactly(traffic: datetime) -> None:
    hours = set(RollupHour.objects.values_list("hour", flat=True))
    assert len(hours) >= 36
    expected: dict[tuple[datetime, str, str], list[Any]] = defaultdict(lambda: [0, Decimal("0"), []])
    for created_at, capability, outcome, cost, latency in RouteLog.objects.values_list(
        "created_at", "capability", "outcome", "cost_usd", "latency_ms"
    ):
        if rollup.hour_of(created_at) in hours:
            row = expected[(rollup.hour_of(created_at), capability, outcome)]
            row[0] += 1
            row[1] += cost
            row[2].append(latency)
    rolled = {(r.hour, r.capability, r.outcome): r for r in RouteLogHour.objects.all()}
    assert set(rolled) == set(expected)
    for key, (calls, cost, latencies) in expected.items():
        row = rolled[key]
        assert (row.calls, row.cost_usd) == (calls, cost), key
        assert row.latency_ms_sum == pytest.approx(sum(latencies))
        assert dict(map(tuple, row.latency_histogram)) == Counter(map(rollup.latency_bucket, latencies))
    attempts: dict[datetime, dict[str, list[int]]] = defaultdict(dict)
    for created_at, backend, status in Attempt.objects.values_list("route_log__created_at", "backend", "status"):
        if rollup.hour_of(created_at) in hours:
            counts = attempts[rollup.hour_of(created_at)].setdefault(backend, [0, 0])
            counts[0] += 1
            counts[1] += status == Attempt.Status.ERROR
    assert {m.hour: m.backend_attempts for m in RollupHour.objects.all()} == {h: attempts.get(h, {}) for h in hours}


def test_it_rolls_up_the_same_rows_twice(traffic: datetime) -> None:
    def rows() -> tuple[list[Any], list[Any]]:
        logs = [
            (r.hour, r.capability, r.outcome, r.calls, r.cost_usd, round(r.latency_ms_sum, 6), r.latency_histogram)
            for r in RouteLogHour.objects.all()
        ]
        return logs, list(RollupHour.objects.values_list("hour", "backend_attempts"))

    since = traffic - timedelta(days=2)
    count = rollup.roll_up(since=since, until=traffic)
    first = rows()
    assert rollup.roll_up(since=since, until=traffic) == count
    assert rows() == first
    assert sum(r.calls for r in RouteLogHour.objects.all()) == RouteLog.objects.filter(
        created_at__lt=rollup.hour_of(traffic)
    ).count()


def test_it_rolls_up_only_hours_that_have_ended(db: None) -> None:
    now = timezone.now()
    make_log(created_at=now)
    # From the start of the previous hour, whatever the minute now: that hour has ended, the
    # current one has not.
    assert rollup.roll_up(since=rollup.hour_of(now) - HOUR, until=now + 2 * HOUR) == 1
    assert list(RollupHour.objects.values_list("hour", flat=True)) == [rollup.hour_of(now) - HOUR]
    assert not RouteLogHour.objects.exists()  # the call is in the current hour
    assert rollup.roll_up(since=now, until=now + HOUR) == 0


@pytest.mark.parametrize("key", ["24h", "7d"])
def test_it_gives_the_dashboard_the_figures_of_the_exact_queries(traffic: datetime, key: str) -> None:
    window, now = stats.WINDOWS[key], timezone.now()
    RollupHour.objects.all().delete()  # nothing rolled up: the dashboard reads RouteLog
    exact = stats.dashboard(window=window, now=now)
    assert rollup.catch_up(since=now - window.span, now=now) > 0
    rolled = stats.dashboard(window=window, now=now)
    assert rolled.percentiles_estimated and not exact.percentiles_estimated
    assert exact.calls == rolled.calls > 1000
    for e, r in zip(exact.capabilities, rolled.capabilities, strict=True):
        assert (e.slug, e.calls, e.fallbacks, e.failures, e.rejected, e.cost) == (
            r.slug, r.calls, r.fallbacks, r.failures, r.rejected, r.cost
        )
        assert within_bound(r.p50_ms, e.p50_ms) and within_bound(r.p95_ms, e.p95_ms), (r, e)
    for e, r in zip(exact.buckets, rolled.buckets, strict=True):
        assert (e.start, e.counts) == (r.start, r.counts)
        assert within_bound(r.p95_ms, e.p95_ms), (r, e)
    assert [(b.slug, b.attempts, b.errors) for b in exact.backends] == [(b.slug, b.attempts, b.errors) for b in rolled.backends]


# --- when hours are read from the rollup -------------------------------------------------------


def test_it_recomputes_an_hour_rolled_up_within_its_grace(db: None) -> None:
    hour = rollup.hour_of(timezone.now()) - 3 * HOUR
    make_log(created_at=hour + timedelta(minutes=10), latency_ms=100)
    early = hour + HOUR + timedelta(minutes=1)  # the hour ended a minute ago
    assert rollup.roll_up(since=hour, until=early, now=early) == 1
    assert not RollupHour.objects.get(hour=hour).is_final()
    # A write that was in flight when the hour ended commits now.
    make_log(created_at=hour + HOUR - timedelta(milliseconds=1), latency_ms=300, cost_usd=Decimal("0.5"))
    window = stats.WINDOWS["24h"]
    assert stats.dashboard(window=window, now=early).calls == 2  # the provisional rollup is not read
    assert rollup.catch_up(since=early - window.span, now=early) > 0  # the older, settled hours
    assert not RollupHour.objects.get(hour=hour).is_final()  # not settled yet: left alone
    data = stats.dashboard(window=window, now=early)
    assert (data.calls, data.percentiles_estimated) == (2, True)  # that hour read from RouteLog
    later = hour + HOUR + RollupHour.GRACE + timedelta(seconds=1)
    assert rollup.catch_up(since=later - window.span, now=later) >= 1
    assert RollupHour.objects.get(hour=hour).is_final()
    (row,) = RouteLogHour.objects.filter(hour=hour)
    assert (row.calls, row.cost_usd) == (2, Decimal("0.5001"))
    data = stats.dashboard(window=window, now=later)
    assert (data.calls, data.percentiles_estimated) == (2, True)
    assert data.capabilities[0].cost == Decimal("0.5001")


def test_it_catches_up_at_most_the_limit_and_reads_the_rest_from_the_route_log(db: None) -> None:
    now = timezone.now()
    for hours in range(1, 8):
        make_log(created_at=now - hours * HOUR, cost_usd=Decimal("0.01"))
    assert rollup.catch_up(since=now - timedelta(hours=24), now=now, limit=2) == 2
    newest = rollup.settled_until(now) - HOUR
    assert sorted(RollupHour.objects.values_list("hour", flat=True)) == [newest - HOUR, newest]
    data = stats.dashboard(window=stats.WINDOWS["24h"], now=now)
    assert data.percentiles_estimated
    assert (data.calls, data.capabilities[0].cost) == (7, Decimal("0.07"))
    # A hole in the middle of the rolled-up hours is read from the route log too.
    rollup.catch_up(since=now - timedelta(hours=24), now=now)
    rollup.invalidate(created_at=now - 4 * HOUR, now=now)
    assert not RollupHour.objects.filter(hour=rollup.hour_of(now - 4 * HOUR)).exists()
    data = stats.dashboard(window=stats.WINDOWS["24h"], now=now)
    assert (data.calls, data.capabilities[0].cost) == (7, Decimal("0.07"))
    assert rollup.catch_up(since=now - timedelta(hours=24), now=now) == 1


def test_it_lets_the_page_read_the_route_log_rather_than_wait_for_another_roll_up(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's write transactions take turns on their own")
    now = timezone.now()
    make_log(created_at=now - 5 * HOUR)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [rollup._LOCK_KEY])  # a backfill is running
        assert rollup.catch_up(since=now - timedelta(hours=24), now=now, wait=False) == 0
    assert not RollupHour.objects.exists()
    assert stats.dashboard(window=stats.WINDOWS["24h"], now=now).calls == 1
    assert rollup.catch_up(since=now - timedelta(hours=24), now=now, wait=False) > 0


def test_it_does_nothing_to_invalidate_an_hour_still_running(db: None, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        rollup.invalidate(created_at=timezone.now())


def test_it_drops_the_rollup_of_an_hour_whose_streamed_call_ends_after_it(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=one%20two%20three")},
        capabilities={"draft": {"intent": "generation", "privacy": "hosted_allowed", "routes": ["llama"]}},
    )
    stream = executor.open_stream("draft", "write something")
    # The stream started three hours ago, and its hour has been rolled up since.
    started = timezone.now() - 3 * HOUR
    RouteLog.objects.filter(pk=stream.route_id).update(created_at=started)
    stream.route_log.created_at = started
    hour = rollup.hour_of(started)
    rollup.roll_up(since=hour, until=hour + HOUR)
    assert RouteLogHour.objects.get(hour=hour).latency_ms_sum < 1000 * 60
    assert "".join(stream) == "one two three"
    assert not RollupHour.objects.filter(hour=hour).exists()
    now = timezone.now()
    rollup.catch_up(since=now - timedelta(hours=24), now=now)
    entry = RouteLog.objects.get(pk=stream.route_id)
    (row,) = RouteLogHour.objects.filter(hour=hour)
    assert (row.outcome, row.latency_ms_sum) == (entry.outcome, pytest.approx(entry.latency_ms))
    assert RollupHour.objects.get(hour=hour).backend_attempts == {"llama": [1, 0]}


# --- who rolls up ------------------------------------------------------------------------------


def test_it_recomputes_the_rollup_from_the_command(traffic: datetime) -> None:
    before = list(RouteLogHour.objects.values_list("hour", "capability", "outcome", "calls", "cost_usd"))
    RouteLogHour.objects.all().delete()
    RollupHour.objects.all().delete()
    out = io.StringIO()
    call_command("rollup_route_logs", "--days", "2", stdout=out)
    assert out.getvalue().startswith("rolled up 4")  # 48 hours, or 49 across an hour's turn
    assert list(RouteLogHour.objects.values_list("hour", "capability", "outcome", "calls", "cost_usd")) == before
    call_command("rollup_route_logs", "--all", stdout=out)
    assert list(RouteLogHour.objects.values_list("hour", "capability", "outcome", "calls", "cost_usd")) == before
    with pytest.raises(CommandError, match="--days"):
        call_command("rollup_route_logs", "--days", "0")


def test_it_rolls_up_recent_hours_from_the_periodic_task(db: None, eager_celery: None) -> None:
    make_log(created_at=timezone.now() - 5 * HOUR)
    tasks.roll_up_recent.delay()
    assert RouteLogHour.objects.get().calls == 1
    assert RollupHour.objects.count() >= 7 * 24 - 2
    assert all(marker.is_final() for marker in RollupHour.objects.all())


def test_it_looks_back_over_the_dashboards_longest_window() -> None:
    assert rollup.LOOKBACK >= max(window.span for window in stats.WINDOWS.values())
