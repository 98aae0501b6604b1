"""Server time of the console's pages over a million route logs (make bench, PostgreSQL only).

One test, so the million rows are generated once for the module (a transactional test's data
is flushed when it ends). Each page is requested through Django's test client, signed in,
WARMUP times and then ROUNDS times; the median and p95 of those are printed against the issue's
targets. The test fails only when a median exceeds twice its target, so a regression shows
without making the suite hostage to the machine's noise.

The generator rolls up the hours it wrote (routing.rollup), as the periodic task keeps them in
production, so the 24-hour and 7-day dashboards are measured in that steady state: whole hours
from the rollup, the partial hours at both ends from the route log. One more line measures the
request that finds the hour just ended not rolled up yet and rolls it up itself.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing import rollup
from routing.models import RollupHour, RouteLog
from tests.routing.test_executor import TRIAGE, classify

COUNT = int(os.environ.get("FOS_BENCH_ROUTE_LOGS", "1000000"))
# A million calls in a week by default: about 143,000 of them in the dashboard's 24-hour window.
DAYS = float(os.environ.get("FOS_BENCH_DAYS", "7"))
ROUNDS = 15
WARMUP = 3

BACKENDS = {
    "spark-llama": {"adapter": "ollama", "locality": "local", "base_url": "http://127.0.0.1:9", "model": "llama3.1:8b"},
    "frontier": {
        "adapter": "openai", "locality": "hosted", "base_url": "http://127.0.0.1:9/v1", "model": "frontier-large",
        "cost_in_per_mtok": "1.25", "cost_out_per_mtok": "10",
    },
    "utility-mini": {
        "adapter": "openai", "locality": "hosted", "base_url": "http://127.0.0.1:9/v1", "model": "utility-mini",
        "cost_in_per_mtok": "0.15", "cost_out_per_mtok": "0.6",
    },
    "keyword-triage": TRIAGE,
}
CAPABILITIES = {
    "classify-fast": classify(["spark-llama", "utility-mini", "keyword-triage"]),
    "extract-invoice": classify(["frontier", "spark-llama"], intent="extraction", verify={"kind": "non_empty"}),
    "summarize-ticket": classify(["utility-mini", "frontier"], intent="generation", verify={"kind": "non_empty"}),
    "redact-local": classify(["spark-llama", "keyword-triage"], privacy="local_only", intent="transformation"),
    "draft-reply": classify(["frontier", "utility-mini"], intent="generation", verify={"kind": "non_empty"}),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(client: Client, url: str, before: Callable[[], None] | None = None) -> tuple[float, float, int]:
    """Median and p95 server time in ms, and the number of queries of one request; `before`
    runs ahead of each request, untimed."""
    for _ in range(WARMUP):
        assert client.get(url).status_code == 200, url
    timings = []
    for _ in range(ROUNDS):
        if before is not None:
            before()
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    if before is not None:
        before()
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return statistics.median(timings), percentile(timings, 95), len(queries)


@pytest.fixture
def persistent_connection() -> Iterator[None]:
    """Keep the database connection between requests, as production does (CONN_MAX_AGE=60):
    the test settings close it after every request, which would time a reconnect per page."""
    previous = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 60
    yield
    connection.settings_dict["CONN_MAX_AGE"] = previous


@pytest.mark.bench
@pytest.mark.django_db(transaction=True)
def test_console_pages_over_a_million_route_logs(install_policy: Any, operator: Any, persistent_connection: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "the console benchmark runs on PostgreSQL only (set DATABASE_URL=postgres://...): "
            "its targets are for the production database"
        )
    install_policy(backends=BACKENDS, capabilities=CAPABILITIES)
    started = time.perf_counter()
    call_command("generate_route_logs", count=COUNT, days=DAYS, batch=20_000, seed=1, stdout=open(os.devnull, "w"))
    generated_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RouteLog._meta.db_table}, routing_attempt")

    client = Client()
    client.force_login(operator)
    first_page = client.get("/console/routes/").context["page"]
    detail = RouteLog.objects.filter(outcome="fallback", id__lte=first_page.entries[0].pk // 2).order_by("-id").first()
    busiest = "classify-fast"
    rolled_hours = RollupHour.objects.count()
    assert client.get("/console/?window=24h").context["data"].percentiles_estimated, "the 24h dashboard must read the rollup"

    def unroll_last_hour() -> None:
        # As when the periodic task has not run since the hour ended: the page rolls it up.
        RollupHour.objects.filter(hour=rollup.settled_until(timezone.now()) - rollup.HOUR).delete()

    pages = [
        ("route log, first page", "/console/routes/", 150),
        ("route log, older page", f"/console/routes/?cursor={first_page.older.encode()}", 150),
        ("route log, outcome=failed", "/console/routes/?outcome=failed", 150),
        ("route log, outcome=rejected", "/console/routes/?outcome=rejected", 150),
        (f"route log, capability={busiest}", f"/console/routes/?capability={busiest}", 150),
        ("route log, capability+outcome=failed", "/console/routes/?capability=redact-local&outcome=failed", 150),
        ("route log, caller=ops-cli, 24h", "/console/routes/?caller=ops-cli&window=24h", 150),
        ("route detail (fallback, 2 attempts)", f"/console/routes/{detail.pk}/", 50),
        ("dashboard, 24h", "/console/?window=24h", 300),
        ("dashboard, 1h", "/console/?window=1h", 300),
        ("dashboard, 7d (no target)", "/console/?window=7d", None),
    ]
    results = [(name, target, *measure(client, url)) for name, url, target in pages]
    results.append(
        ("dashboard, 24h, rolling up an hour (no target)", None, *measure(client, "/console/?window=24h", unroll_last_hour))
    )

    print(
        f"\nconsole pages on {connection.vendor} database {connection.settings_dict['NAME']!r}: "
        f"{COUNT:,} route logs over {DAYS:g} days, generated and rolled up ({rolled_hours} hours) in {generated_s:.1f} s; "
        f"median and p95 of {ROUNDS} requests after {WARMUP} warm-up, Django test client"
    )
    print(f"  {'page':48s} {'median':>9s} {'p95':>9s} {'target':>8s} {'queries':>8s}")
    for name, target, median, p95, queries in results:
        shown = f"{target} ms" if target else "-"
        verdict = "" if not target else "  OVER TARGET" if median > target else "  ok"
        print(f"  {name:48s} {median:6.1f} ms {p95:6.1f} ms {shown:>8s} {queries:8d}{verdict}")
    over = [f"{name}: {median:.0f} ms > 2 x {target} ms" for name, target, median, _, _ in results if target and median > 2 * target]
    assert not over, "regression: " + "; ".join(over)
