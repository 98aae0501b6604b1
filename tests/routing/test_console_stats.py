"""The console's queries (routing.stats), charts (routing.charts) and the route log generator."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from routing import charts, stats
from routing.models import Attempt, RouteLog
from tests.routing.test_console_views import make_log
from tests.routing.test_executor import TRIAGE, classify, http_backend

UTC = timezone.utc


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([], 0.5, None), ([7.0], 0.95, 7.0), ([1, 2, 3, 4], 0.5, 2.5), ([10, 20, 30, 40, 50], 0.95, 48.0)],
)
def test_it_computes_percentiles_as_percentile_cont_does(values: list[float], fraction: float, expected: float | None) -> None:
    assert stats.percentile(values, fraction) == expected


def test_it_round_trips_a_cursor_and_refuses_garbage() -> None:
    cursor = stats.Cursor(created_at=datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), id=42)
    assert stats.Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "1", "a.b", "1.2.3", "-1.2", "1. 2", "1" * 18 + ".1"):
        with pytest.raises(ValueError):
            stats.Cursor.decode(bad)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("llama (primary): kept (local, ollama)", "kept"),
        ("frontier (fallback 1): skipped: backend disabled", "skipped"),
        ("llama: failed: timeout (no answer)", "failed"),
        ("triage: answered, verification passed", "answered"),
        ("not falling back: auth is not in fallback_on", "failed"),
        ("spark: not tried: latency budget of 10 ms spent", "skipped"),
        ("something else", "note"),
    ],
)
def test_it_reads_the_verdict_of_a_reason(reason: str, kind: str) -> None:
    assert stats.reason_kind(reason) == kind


def test_it_pages_the_route_log_with_a_bounded_query(db: None) -> None:
    moment = datetime(2025, 1, 1, 12, tzinfo=UTC)
    ids = [make_log(created_at=moment).pk for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        first = stats.route_log_page(filters=stats.RouteLogFilters(), size=2)
    (sql,) = [q["sql"] for q in queries]
    assert "LIMIT 3" in sql and "OFFSET" not in sql.upper() and "COUNT(" not in sql.upper()
    assert '"reasons"' not in sql and '"metadata"' not in sql
    second = stats.route_log_page(filters=stats.RouteLogFilters(), cursor=first.older, size=2)
    third = stats.route_log_page(filters=stats.RouteLogFilters(), cursor=second.older, size=2)
    assert [e.pk for e in first.entries + second.entries + third.entries] == sorted(ids, reverse=True)
    assert third.older is None


def test_it_buckets_calls_by_time_and_outcome(db: None) -> None:
    now = datetime(2025, 1, 1, 12, 30, tzinfo=UTC)
    make_log(created_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC), latency_ms=100)  # on a bucket's edge
    make_log(created_at=datetime(2025, 1, 1, 12, 20, tzinfo=UTC), outcome="failed", backend="", latency_ms=300)
    make_log(created_at=datetime(2025, 1, 1, 11, 59, 59, tzinfo=UTC), outcome="rejected", backend="", latency_ms=1)
    make_log(created_at=datetime(2025, 1, 1, 10, 0, tzinfo=UTC))  # outside the hour
    data = stats.dashboard(window=stats.WINDOWS["1h"], now=now)
    assert len(data.buckets) == 13  # 5-minute buckets from 11:30 to 12:30, both ends partial
    by_start = {b.start.strftime("%H:%M"): b for b in data.buckets}
    assert by_start["12:00"].counts["primary"] == 1
    assert by_start["12:20"].counts["failed"] == 1
    assert by_start["11:55"].counts["rejected"] == 1
    assert by_start["11:55"].p95_ms is None  # rejected calls have no latency worth charting
    assert sum(b.total for b in data.buckets) == data.calls == 3
    (row,) = data.capabilities
    assert (row.calls, row.failures, row.rejected) == (3, 1, 1)
    assert row.p50_ms == pytest.approx(200.0)  # rejected calls do not count towards latency


def test_it_draws_stacked_columns_and_a_latency_line() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    buckets = [
        stats.Bucket(start=start, end=start + timedelta(hours=1), counts={"primary": 30, "fallback": 10, "failed": 0, "rejected": 0}, p95_ms=420.0),
        stats.Bucket(start=start + timedelta(hours=1), end=start + timedelta(hours=2), counts=dict.fromkeys(stats.OUTCOMES, 0), p95_ms=None),
    ]
    calls = charts.calls_chart(buckets)
    assert calls.y_ticks[-1].label == "50"  # 40 rounded up to a readable top
    first = calls.columns[0]
    assert [s.outcome for s in first.segments] == ["primary", "fallback"]
    assert first.segments[0].height == pytest.approx(3 * first.segments[1].height, rel=0.01)
    assert "40 calls (30 primary, 10 fallback)" in first.title and calls.columns[1].segments == []
    latency = charts.latency_chart(buckets)
    assert len(latency.points) == 1 and latency.path.startswith("M") and "p95 420 ms" in latency.points[0].title
    assert charts.latency_chart(buckets[1:]).empty


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (1, 1), (7, 10), (40, 50), (120, 200), (2400, 2500)])
def test_it_rounds_chart_tops_up_to_readable_numbers(value: float, expected: float) -> None:
    assert charts.nice_ceiling(value) == expected


def test_it_generates_realistic_route_logs_for_the_policy(sim: Any, install_policy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=x"), "cloud": http_backend(sim, "openai", "answer=x", locality="hosted", cost_in_per_mtok="1", cost_out_per_mtok="4"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "cloud", "triage"]), "solo": classify(["triage"])},
    )
    call_command("generate_route_logs", count=3000, days=2, batch=700, seed=7)
    assert "generated 3000 route logs" in capsys.readouterr().out
    assert RouteLog.objects.count() == 3000
    outcomes = Counter(RouteLog.objects.values_list("outcome", flat=True))
    assert 0.78 < outcomes["primary"] / 3000 < 0.92 and outcomes["rejected"] > 0 and outcomes["failed"] > 0
    assert outcomes["fallback"] > 100
    assert set(RouteLog.objects.values_list("capability", flat=True)) == {"classify", "solo"}
    fallback = RouteLog.objects.filter(outcome="fallback").first()
    assert [a.status for a in fallback.attempts.all()] == ["error", "ok"]
    assert not Attempt.objects.filter(route_log__outcome="rejected").exists()
    assert Attempt.objects.filter(backend="cloud", status="ok", cost_usd__gt=0).exists()
    assert not RouteLog.objects.filter(capability="solo", outcome="fallback").exists()
    times = list(RouteLog.objects.order_by("id").values_list("created_at", flat=True))
    assert times == sorted(times) and times[-1] - times[0] > timedelta(days=1, hours=20)


def test_it_generates_route_logs_without_a_policy(db: None) -> None:
    call_command("generate_route_logs", count=50, seed=1)
    assert RouteLog.objects.count() == 50
    assert set(RouteLog.objects.values_list("policy_revision", flat=True)) == {0}
    assert RouteLog.objects.filter(capability="classify-fast").exists()


def test_it_refuses_a_bad_count(db: None) -> None:
    with pytest.raises(CommandError, match="--count"):
        call_command("generate_route_logs", count=0)


def test_it_sums_costs_exactly(db: None) -> None:
    for _ in range(3):
        make_log(cost_usd=Decimal("0.00000001"))
    (row,) = stats.dashboard(window=stats.WINDOWS["24h"]).capabilities
    assert row.cost == Decimal("0.00000003")
