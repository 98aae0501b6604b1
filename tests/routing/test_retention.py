"""Retention: old route logs go with their attempts, in batches; expired idempotency keys go;
nothing the dashboard reads is touched."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from routing import retention, tasks
from routing.callers import create_caller
from routing.models import Attempt, IdempotencyRecord, RouteLog
from tests.routing.test_console_views import make_log

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def log_with_attempts(age: timedelta, attempts: int = 2) -> RouteLog:
    route_log = make_log(created_at=timezone.now() - age)
    for index in range(attempts):
        Attempt.objects.create(
            route_log=route_log, index=index, backend="llama", locality="local", adapter="ollama",
            status="ok", latency_ms=1.0,
        )
    return route_log


def key(name: str, *, expires_in: timedelta) -> IdempotencyRecord:
    caller = create_caller(name=f"app-{name}")[0]
    now = timezone.now()
    return IdempotencyRecord.objects.create(
        caller=caller, key=name, request_sha256="b" * 64, state="done", response_status=200,
        response_body={"output": "a stored answer"}, created_at=now, expires_at=now + expires_in,
    )


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_route_logs", *args, stdout=out)
    return out.getvalue()


def test_it_deletes_old_route_logs_with_their_attempts_in_batches() -> None:
    old = [log_with_attempts(40 * DAY) for _ in range(5)]
    edge = log_with_attempts(30 * DAY - timedelta(minutes=30))  # inside the horizon's hour: kept
    recent = log_with_attempts(2 * DAY)
    pruned = retention.prune(days=30, batch=2)
    assert (pruned.route_logs, pruned.attempts) == (5, 10)
    assert not RouteLog.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert set(RouteLog.objects.values_list("pk", flat=True)) == {edge.pk, recent.pk}
    assert Attempt.objects.count() == 4
    assert pruned.before == retention.horizon(days=30) and pruned.before.minute == 0


def test_it_deletes_expired_idempotency_keys_and_keeps_live_ones() -> None:
    expired, live = key("expired", expires_in=-timedelta(seconds=1)), key("live", expires_in=DAY)
    log_with_attempts(40 * DAY)
    pruned = retention.prune(days=None)
    assert pruned.idempotency_keys == 1 and pruned.before is None and pruned.route_logs == 0
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [live.pk]
    assert RouteLog.objects.count() == 1 and not IdempotencyRecord.objects.filter(pk=expired.pk).exists()


def test_the_command_reports_and_a_dry_run_deletes_nothing(settings: Any) -> None:
    settings.FOS_ROUTE_LOG_RETENTION_DAYS = 10
    log_with_attempts(11 * DAY)
    log_with_attempts(1 * DAY)
    key("expired", expires_in=-DAY)
    output = run("--dry-run")
    assert "would delete 1 route logs and 2 attempts created before" in output
    assert "would delete 1 expired idempotency keys" in output
    assert RouteLog.objects.count() == 2 and IdempotencyRecord.objects.count() == 1
    output = run()
    assert "deleted 1 route logs and 2 attempts" in output and "deleted 1 expired idempotency keys" in output
    assert RouteLog.objects.count() == 1 and IdempotencyRecord.objects.count() == 0


def test_the_command_keeps_route_logs_without_a_retention() -> None:
    log_with_attempts(400 * DAY)
    assert "kept every route log (no retention" in run()
    assert RouteLog.objects.count() == 1
    run("--older-than-days", "399")
    assert RouteLog.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than-days", "7"), "kept at least 8 days"),
        (("--older-than-days", "-1"), "must be 0 (keep) or a number of days"),
        (("--older-than-days", "30", "--batch", "0"), "batch size must be at least 1"),
    ],
)
def test_the_command_refuses_a_horizon_inside_the_dashboards_window(args: tuple[str, ...], message: str) -> None:
    log_with_attempts(5 * DAY)
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)
    assert RouteLog.objects.count() == 1


def test_the_periodic_task_prunes_by_the_setting(settings: Any, eager_celery: None) -> None:
    settings.FOS_ROUTE_LOG_RETENTION_DAYS = 8
    log_with_attempts(9 * DAY)
    kept = log_with_attempts(6 * DAY)
    key("expired", expires_in=-DAY)
    tasks.prune_expired.delay()
    assert list(RouteLog.objects.values_list("pk", flat=True)) == [kept.pk]
    assert IdempotencyRecord.objects.count() == 0
    assert "routing.tasks.prune_expired" in {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
