"""Celery tasks of the routing app. Each takes plain ids, loads what it needs and calls one
domain function; on the embedded default they run eagerly, in the web process."""

from __future__ import annotations

from celery import shared_task

from routing import planner, probe


@shared_task(bind=True, ignore_result=True, acks_late=True, soft_time_limit=20, time_limit=30)
def probe_backend(self: object, slug: str) -> None:
    """Probe `slug` as the current policy describes it; the result waits in the cache under
    this task's id (see routing.probe)."""
    probe.probe_and_store(
        task_id=self.request.id,  # type: ignore[attr-defined]
        slug=slug,
        backends=planner.load_snapshot().backends,
    )
