"""Celery tasks of the routing app. Each takes plain ids, loads what it needs and calls one
domain function; on the embedded default they run eagerly, in the web process."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from routing import planner, probe, retention, rollup


@shared_task(bind=True, ignore_result=True, acks_late=True, soft_time_limit=20, time_limit=30)
def probe_backend(self: object, slug: str) -> None:
    """Probe `slug` as the current policy describes it; the result waits in the cache under
    this task's id (see routing.probe)."""
    probe.probe_and_store(
        task_id=self.request.id,  # type: ignore[attr-defined]
        slug=slug,
        backends=planner.load_snapshot().backends,
    )


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=240, time_limit=300)
def roll_up_recent() -> None:
    """Roll up the hours of the dashboard's longest window that have settled since the last
    run (or were invalidated). Run by Celery beat every minute (CELERY_BEAT_SCHEDULE); the
    dashboard also catches up on its own, so a missed run costs a page view a little time."""
    rollup.catch_up(since=timezone.now() - rollup.LOOKBACK, limit=None)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=1800, time_limit=1900)
def prune_expired() -> None:
    """Delete expired idempotency keys and, with FOS_ROUTE_LOG_RETENTION_DAYS set, route logs
    older than that. Run by Celery beat every hour (CELERY_BEAT_SCHEDULE)."""
    retention.prune(days=settings.FOS_ROUTE_LOG_RETENTION_DAYS or None)
