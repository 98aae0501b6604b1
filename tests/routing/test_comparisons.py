"""Comparison runs: cells, privacy, metrics, idempotence, cancel, and restart after a kill.

On the embedded default the task runs in-process (eagerly, as the settings say); with
REDIS_URL set, one test also starts real Celery workers as subprocesses, kills one mid-run
and resumes the run with another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from fos_console.celery import app as celery_app
from registry.models import Backend, Capability, Route
from routing import comparisons
from routing.comparison_charts import bar_chart, comparison_charts
from routing.models import ComparisonResult, ComparisonRun, EvaluationCase, RouteLog
from tests.routing.test_executor import TRIAGE, classify, http_backend

ROOT = Path(__file__).resolve().parents[2]


def route(capability: Capability, backend: str) -> Route:
    return capability.routes.get(backend__slug=backend)


def add_cases(capability: Capability, *texts: str, private: tuple[int, ...] = ()) -> list[EvaluationCase]:
    return [
        EvaluationCase.objects.create(capability=capability, name=f"case {i}", input=text, private=i in private)
        for i, text in enumerate(texts)
    ]


def new_run(capability: Capability, backends: list[str], cases: list[EvaluationCase], **extra: Any) -> ComparisonRun:
    return comparisons.create_run(
        capability=capability, routes=[route(capability, b) for b in backends], cases=cases, ticket_ref="FOS-1", **extra
    )


def cells(run: ComparisonRun) -> dict[tuple[str, str], ComparisonResult]:
    return {(r.case.name, r.backend): r for r in ComparisonResult.objects.filter(run=run).select_related("case")}


@pytest.fixture
def two_routes(install_policy: Any, sim: Any) -> Capability:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=billing"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    return Capability.objects.get(slug="classify")


# Running cells


@pytest.mark.django_db
def test_it_runs_every_cell_through_the_adapters_without_writing_route_logs(two_routes: Capability, sim: Any) -> None:
    cases = add_cases(two_routes, "the invoice is wrong", "the site is down", "hello")
    run = new_run(two_routes, ["llama", "triage"], cases)
    assert (run.status, run.cells_total) == ("queued", 6)

    assert comparisons.execute_run(run_id=run.pk) == "done"

    run.refresh_from_db()
    assert run.status == "done" and run.finished_at is not None
    got = cells(run)
    assert len(got) == 6
    assert [got[(f"case {i}", "triage")].output for i in range(3)] == ["billing", "urgent", "other"]
    llama = got[("case 0", "llama")]
    assert (llama.status, llama.output, llama.passed, llama.error_class) == ("ok", "billing", True, "")
    assert llama.latency_ms is not None and llama.tokens_out > 0
    assert sim.calls("answer=billing") == 3
    assert RouteLog.objects.count() == 0  # evaluation, not traffic
    assert comparisons.progress(run) == comparisons.Progress(done=6, total=6)


@pytest.mark.django_db
def test_it_records_errors_and_failed_verification_per_cell(install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={
            "broken": http_backend(sim, "openai", "status=500"),
            "chatty": http_backend(sim, "ollama", "answer=Sure! It is billing."),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["broken", "chatty", "triage"])},
    )
    capability = Capability.objects.get(slug="classify")
    run = new_run(capability, ["broken", "chatty", "triage"], add_cases(capability, "refund"))
    comparisons.execute_run(run_id=run.pk)
    got = cells(run)
    broken, chatty = got[("case 0", "broken")], got[("case 0", "chatty")]
    assert (broken.status, broken.error_class, broken.output, broken.passed) == ("error", "server_error", "", None)
    assert (chatty.status, chatty.error_class, chatty.passed) == ("ok", "verification_failed", False)
    assert chatty.output == "Sure! It is billing."
    assert "not one of" in chatty.detail


# The privacy boundary


@pytest.mark.django_db
def test_it_never_sends_a_private_case_to_a_hosted_backend(install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={
            "frontier": http_backend(sim, "openai", "tag=hosted,answer=billing", locality="hosted"),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["frontier", "triage"])},
    )
    capability = Capability.objects.get(slug="classify")
    cases = add_cases(capability, "public refund", "private invoice of Ada", private=(1,))
    run = new_run(capability, ["frontier", "triage"], cases)
    comparisons.execute_run(run_id=run.pk)

    got = cells(run)
    assert sim.calls("tag=hosted,answer=billing") == 1  # the public case only
    kept = got[("case 1", "frontier")]
    assert (kept.status, kept.output, kept.private) == ("not_run", "", True)
    assert kept.detail == "not run: private case, never sent to a hosted backend"
    assert got[("case 1", "triage")].status == "ok" and got[("case 1", "triage")].private is True
    summary = {s.backend: s for s in comparisons.summarize(run, list(got.values()))}["frontier"]
    assert (summary.run, summary.not_run) == (1, 1)


@pytest.mark.django_db
def test_it_never_sends_any_case_of_a_local_only_capability_to_a_hosted_backend(install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={"frontier": http_backend(sim, "openai", "tag=hosted-local-only", locality="hosted"), "triage": TRIAGE},
        capabilities={"redact": classify(["triage"], privacy="local_only")},
    )
    capability = Capability.objects.get(slug="redact")
    # The registry refuses a live hosted route under local_only; a retired one (or one whose
    # contract changed since) can still be named in a comparison.
    hosted = Route.objects.create(capability=capability, backend=Backend.objects.get(slug="frontier"), status="retired", position=1)
    run = comparisons.create_run(capability=capability, routes=[route(capability, "triage"), hosted], cases=add_cases(capability, "one", "two"))
    comparisons.execute_run(run_id=run.pk)

    assert sim.calls("tag=hosted-local-only") == 0
    results = ComparisonResult.objects.filter(run=run, route=hosted)
    assert [r.status for r in results] == ["not_run", "not_run"]
    assert all("local_only" in r.detail for r in results)


# Metrics


@pytest.mark.django_db
def test_it_summarizes_pass_rate_latency_cost_errors_agreement_and_fallbacks(install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={
            "llama": http_backend(sim, "ollama", "answer=billing,tokens_in=1000,tokens_out=10", cost_in_per_mtok="2", cost_out_per_mtok="10"),
            "broken": http_backend(sim, "openai", "status=503"),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["llama", "broken", "triage"])},
    )
    capability = Capability.objects.get(slug="classify")
    cases = add_cases(capability, "the invoice is wrong", "the site is down", "hello", "refund")
    run = new_run(capability, ["llama", "broken", "triage"], cases)
    comparisons.execute_run(run_id=run.pk)
    summaries = {s.backend: s for s in comparisons.summarize(run, list(ComparisonResult.objects.filter(run=run)))}

    llama, broken, triage = summaries["llama"], summaries["broken"], summaries["triage"]
    assert llama.is_baseline and llama.role == "primary"  # the current primary, by default
    assert llama.metrics["verification_pass_rate"] == 1
    assert llama.metrics["mean_cost_usd"] == Decimal("0.0021")  # (1000 x 2 + 10 x 10) / 1e6
    assert llama.metrics["agreement_with_baseline"] == 1
    assert llama.metrics["error_rate"] == 0 and llama.metrics["fallback_rate"] == 0
    assert llama.metrics["latency_p95_ms"] is not None and llama.latency_p50_ms is not None

    assert broken.metrics["verification_pass_rate"] == 0 and broken.metrics["error_rate"] == 1
    assert broken.errors_by_class == {"server_error": 4}
    assert broken.metrics["latency_p95_ms"] is None  # latency is over answered cases only
    assert broken.reasons["latency_p95_ms"] == "no case was answered by this route"
    assert broken.metrics["fallback_rate"] == 1  # triage, after it, answered every case
    assert broken.metrics["agreement_with_baseline"] == 0

    assert triage.metrics["agreement_with_baseline"] == Decimal("0.5")  # billing twice of four
    assert triage.metrics["fallback_rate"] == 0  # nothing after the last route
    assert triage.inspectability[0] == "full" and llama.inspectability[0] == "inspectable"


def test_it_takes_nearest_rank_percentiles() -> None:
    assert comparisons.percentile([5.0], 95) == 5.0
    assert comparisons.percentile([float(v) for v in range(1, 21)], 95) == 19.0
    assert comparisons.percentile([float(v) for v in range(1, 21)], 50) == 10.0


def test_it_draws_bars_to_scale_and_marks_missing_values() -> None:
    chart = bar_chart(title="t", bars=[("a", Decimal("50"), True), ("b", Decimal("100"), False), ("c", None, False)], fmt="{:.0f}")
    widths = [float(bar.width) for bar in chart.bars]
    assert widths[1] == pytest.approx(2 * widths[0]) and widths[2] == 0
    assert [bar.value_text for bar in chart.bars] == ["50", "100", "n/a"]
    assert [bar.css for bar in chart.bars] == ["bar baseline", "bar", "bar none"]
    assert len(comparison_charts([])) == 4


# Creating a run


@pytest.mark.django_db
def test_it_refuses_runs_it_cannot_make(two_routes: Capability, install_policy: Any) -> None:
    cases = add_cases(two_routes, "x")
    with pytest.raises(comparisons.ComparisonError, match="between 2"):
        new_run(two_routes, ["llama"], cases)
    with pytest.raises(comparisons.ComparisonError, match="no evaluation cases"):
        new_run(two_routes, ["llama", "triage"], [])
    install_policy(backends={}, capabilities={"other": classify(["triage"])})
    other = Capability.objects.get(slug="other")
    with pytest.raises(comparisons.ComparisonError, match="must belong to classify"):
        comparisons.create_run(capability=two_routes, routes=[route(two_routes, "llama"), route(other, "triage")], cases=cases)
    with pytest.raises(comparisons.ComparisonError, match="baseline"):
        new_run(two_routes, ["llama", "triage"], cases, baseline=route(other, "triage"))
    assert ComparisonRun.objects.count() == 0


@pytest.mark.django_db
def test_it_queues_the_task_on_commit_and_runs_it_in_process_on_the_embedded_default(
    two_routes: Capability, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, "refund", "down"))
    assert len(callbacks) == 1
    run.refresh_from_db()
    assert run.status == "done" and ComparisonResult.objects.filter(run=run).count() == 4


@pytest.mark.django_db(transaction=True)
def test_it_runs_in_a_thread_on_the_embedded_default_so_starting_answers_at_once(
    install_policy: Any, sim: Any, settings: Any
) -> None:
    settings.FOS_COMPARISONS_IN_THREAD = True
    install_policy(
        backends={"slow": http_backend(sim, "ollama", "delay=800,answer=billing"), "triage": TRIAGE},
        capabilities={"classify": classify(["slow", "triage"])},
    )
    capability = Capability.objects.get(slug="classify")
    cases = add_cases(capability, "refund", "down", "hello")
    started = time.monotonic()
    run = new_run(capability, ["slow", "triage"], cases)
    assert time.monotonic() - started < 0.6  # the slow cells (800 ms each) run after this returned
    run.refresh_from_db()
    assert run.status in ("queued", "running")
    wait_for(lambda: ComparisonRun.objects.get(pk=run.pk).status == "done", what="the run to finish")
    assert ComparisonResult.objects.filter(run=run).count() == 6
    assert sim.calls("delay=800,answer=billing") == 3


# Idempotence, cancel, restart


@pytest.mark.django_db
def test_it_runs_a_run_once_however_often_the_task_is_delivered(two_routes: Capability, sim: Any) -> None:
    run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, "refund", "down"))
    assert comparisons.execute_run(run_id=run.pk) == "done"
    assert comparisons.execute_run(run_id=run.pk) == "skipped"
    assert ComparisonResult.objects.filter(run=run).count() == 4
    assert sim.calls("answer=billing") == 2


@pytest.mark.django_db
def test_it_lets_only_one_worker_claim_a_run(two_routes: Capability) -> None:
    run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, "refund"))
    first = comparisons._claim(run.pk)
    assert first is not None
    assert comparisons._claim(run.pk) is None  # running, with a fresh heartbeat
    ComparisonRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    second = comparisons._claim(run.pk)  # a stale one is taken over
    assert second not in (None, first)
    assert not comparisons._beat(run.pk, first)  # and the first worker learns it lost it


@pytest.mark.django_db
def test_it_does_not_start_a_cancelled_run(two_routes: Capability, sim: Any) -> None:
    run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, "refund"))
    assert comparisons.cancel_run(run_id=run.pk)
    assert comparisons.execute_run(run_id=run.pk) == "skipped"
    assert ComparisonResult.objects.filter(run=run).count() == 0 and sim.calls() == 0
    assert not comparisons.cancel_run(run_id=run.pk)  # already finished


@pytest.mark.django_db(transaction=True)
def test_it_stops_between_cells_when_cancelled(install_policy: Any, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    install_policy(
        backends={"slow": http_backend(sim, "ollama", "tag=cancel,delay=150,answer=billing"), "triage": TRIAGE},
        capabilities={"classify": classify(["slow", "triage"])},
    )
    capability = Capability.objects.get(slug="classify")
    monkeypatch.setattr(comparisons, "enqueue", lambda **_: None)  # this test runs the task itself
    monkeypatch.setattr(comparisons, "CONCURRENCY", 1)
    run = new_run(capability, ["slow", "triage"], add_cases(capability, *[f"refund {i}" for i in range(6)]))
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(comparisons.execute_run(run_id=run.pk)))
    worker.start()
    wait_for(lambda: ComparisonResult.objects.filter(run=run, backend="slow").exists(), what="a first slow cell")
    assert comparisons.cancel_run(run_id=run.pk)
    worker.join(timeout=10)

    assert outcome == ["cancelled"]
    done = ComparisonResult.objects.filter(run=run).count()
    assert 0 < done < 12
    assert sim.calls("tag=cancel,delay=150,answer=billing") <= 2  # the cell in hand at most
    run.refresh_from_db()
    assert run.status == "cancelled" and comparisons.can_resume(run)


class _Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the task catches it."""


@pytest.mark.django_db
def test_it_resumes_a_run_whose_worker_died_without_duplicating_results(
    two_routes: Capability,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    eager_celery: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, *[f"refund {i}" for i in range(5)]))
    real_save, saved = comparisons._save, []

    def save_then_die(*args: Any) -> None:
        real_save(*args)
        saved.append(1)
        if len(saved) == 3:
            raise _Killed()

    monkeypatch.setattr(comparisons, "_save", save_then_die)
    with pytest.raises(_Killed):
        comparisons.execute_run(run_id=run.pk)
    monkeypatch.setattr(comparisons, "_save", real_save)
    run.refresh_from_db()
    assert run.status == "running" and ComparisonResult.objects.filter(run=run).count() == 3
    before = set(ComparisonResult.objects.filter(run=run).values_list("pk", flat=True))
    assert not comparisons.resume_run(run=run)  # the heartbeat is fresh: the worker may be alive

    ComparisonRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=comparisons.stale_after_s() + 1))
    run.refresh_from_db()
    assert comparisons.is_stale(run) and comparisons.can_resume(run)
    with django_capture_on_commit_callbacks(execute=True):
        assert comparisons.resume_run(run=run)

    run.refresh_from_db()
    assert run.status == "done"
    results = ComparisonResult.objects.filter(run=run)
    assert results.count() == 10
    assert len(set(results.values_list("case_id", "route_id"))) == 10
    assert before <= set(results.values_list("pk", flat=True))  # the first worker's rows stand


@pytest.mark.django_db
def test_it_marks_a_run_failed_when_it_breaks_and_lets_it_resume(two_routes: Capability, monkeypatch: pytest.MonkeyPatch) -> None:
    run = new_run(two_routes, ["llama", "triage"], add_cases(two_routes, "refund"))

    def explode(*args: Any) -> bool:
        raise RuntimeError("database went away with /secret/path")

    monkeypatch.setattr(comparisons, "_run_cells", explode)
    assert comparisons.execute_run(run_id=run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "the run stopped: RuntimeError"
    assert comparisons.can_resume(run)


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# A real Celery worker, killed mid-run


def database_url() -> str:
    """The test database as a URL a worker subprocess can use."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor != "postgresql":
        pytest.skip(f"no worker subprocess for {connection.vendor}")
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def start_worker() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """start_worker(): a Celery worker process on the test database and REDIS_URL's broker."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DATABASE_URL=database_url(), FOS_TESTING="1", DJANGO_SETTINGS_MODULE="fos_console.settings")

    def start() -> subprocess.Popen[bytes]:
        log = tempfile.TemporaryFile()
        command = [
            str(Path(sys.executable).parent / "celery"), "-A", "fos_console", "worker", "--pool", "threads",
            "-c", "2", "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning",
        ]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
        if "Traceback" in output:
            print(f"worker {process.pid} output:\n{output}")


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs a Redis broker (REDIS_URL): the embedded default runs tasks in-process, "
    "tested by test_it_resumes_a_run_whose_worker_died_without_duplicating_results",
)
@pytest.mark.django_db(transaction=True)
def test_it_survives_a_celery_worker_killed_mid_run_without_duplicating_results(
    install_policy: Any, sim: Any, settings: Any, start_worker: Callable[[], subprocess.Popen[bytes]]
) -> None:
    assert celery_app.conf.task_always_eager is False
    slow = "tag=kill,delay=400,answer=billing"
    install_policy(
        backends={"slow-a": http_backend(sim, "ollama", slow), "slow-b": http_backend(sim, "openai", slow + ",tag=b")},
        capabilities={"classify": classify(["slow-a", "slow-b"])},
    )
    capability = Capability.objects.get(slug="classify")
    run = new_run(capability, ["slow-a", "slow-b"], add_cases(capability, *[f"refund {i}" for i in range(8)]))
    total = run.cells_total
    results = ComparisonResult.objects.filter(run=run)

    first = start_worker()
    wait_for(lambda: results.exists(), what="the first worker's first cell")
    first.kill()
    first.wait(timeout=10)
    at_kill = set(results.values_list("pk", flat=True))
    assert 0 < len(at_kill) < total, "the worker must die mid-run"
    run.refresh_from_db()
    assert run.status == "running"

    settings.FOS_COMPARISON_STALE_S = 0.5
    wait_for(lambda: comparisons.can_resume(ComparisonRun.objects.get(pk=run.pk)), what="the run to go stale")
    assert comparisons.resume_run(run=ComparisonRun.objects.get(pk=run.pk))
    start_worker()
    wait_for(lambda: ComparisonRun.objects.get(pk=run.pk).status == "done", what="the second worker to finish")

    assert results.count() == total
    assert len(set(results.values_list("case_id", "route_id"))) == total
    assert at_kill <= set(results.values_list("pk", flat=True))
    # Each cell called at most once more than it had to: only the calls in flight at the kill.
    calls = sim.calls(slow) + sim.calls(slow + ",tag=b")
    assert total <= calls <= total + comparisons.CONCURRENCY
