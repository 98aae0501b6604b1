"""Retention: route logs older than a horizon, and idempotency keys past their expiry (they
hold the answers they replay, so they must not outlive it).

Route logs go oldest first in batches, each batch and its attempts in one transaction, so a long
prune holds no lock for long and keeps what it did if stopped. The horizon is a whole hour and at
least MIN_RETENTION_DAYS back: the dashboard reads its longest window (7 days) from the route
log and its hourly rollup, and a prune never reaches into it. Rollups and comparison results are
kept; proofs are frozen copies and do not depend on the route logs they sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from routing import rollup
from routing.models import Attempt, IdempotencyRecord, RouteLog

MIN_RETENTION_DAYS = 8
DEFAULT_BATCH = 5000


class RetentionError(ValueError):
    pass


@dataclass(frozen=True)
class Pruned:
    before: datetime | None  # None: route logs were kept (no retention)
    route_logs: int
    attempts: int
    idempotency_keys: int


def horizon(*, days: int, now: datetime | None = None) -> datetime:
    """The start of the hour `days` back: route logs created before it may go."""
    if days < MIN_RETENTION_DAYS:
        raise RetentionError(
            f"route logs are kept at least {MIN_RETENTION_DAYS} days: the dashboard reads the last 7 days "
            f"from them (asked for {days})"
        )
    return rollup.hour_of((now or timezone.now()) - timedelta(days=days))


def prune(*, days: int | None, now: datetime | None = None, batch: int = DEFAULT_BATCH, dry_run: bool = False) -> Pruned:
    """Delete expired idempotency keys and, when `days` is set, the route logs (with their
    attempts) older than `days`. With `dry_run`, count what would go and delete nothing."""
    now = now or timezone.now()
    if batch < 1:
        raise RetentionError(f"the batch size must be at least 1 (asked for {batch})")
    before = horizon(days=days, now=now) if days else None
    expired = IdempotencyRecord.objects.filter(expires_at__lte=now)
    if dry_run:
        old = RouteLog.objects.filter(created_at__lt=before) if before else RouteLog.objects.none()
        return Pruned(
            before=before,
            route_logs=old.count(),
            attempts=Attempt.objects.filter(route_log__in=old).count() if before else 0,
            idempotency_keys=expired.count(),
        )
    keys, _ = expired.delete()
    logs = attempts = 0
    while before is not None:
        with transaction.atomic():
            ids = list(
                RouteLog.objects.filter(created_at__lt=before)
                .order_by("created_at", "id")
                .values_list("id", flat=True)[:batch]
            )
            if not ids:
                break
            attempts += Attempt.objects.filter(route_log_id__in=ids).delete()[0]
            logs += RouteLog.objects.filter(id__in=ids).delete()[0]
    return Pruned(before=before, route_logs=logs, attempts=attempts, idempotency_keys=keys)
