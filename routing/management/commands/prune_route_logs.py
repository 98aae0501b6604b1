"""manage.py prune_route_logs [--older-than-days N] [--batch B] [--dry-run]

Deletes route logs (and their attempts) older than N days, N from FOS_ROUTE_LOG_RETENTION_DAYS
by default (0 there keeps them all), and always the idempotency keys past their expiry. The
periodic task `routing.tasks.prune_expired` does the same every hour. See routing.retention.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing import retention


class Command(BaseCommand):
    help = "Delete route logs older than the retention horizon, and expired idempotency keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"Delete route logs older than N days, at least {retention.MIN_RETENTION_DAYS} "
            "(default: FOS_ROUTE_LOG_RETENTION_DAYS; 0 keeps them).",
        )
        parser.add_argument("--batch", type=int, default=retention.DEFAULT_BATCH, help="Route logs per transaction.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

    def handle(self, *args: Any, older_than_days: int | None, batch: int, dry_run: bool, **options: Any) -> None:
        days = settings.FOS_ROUTE_LOG_RETENTION_DAYS if older_than_days is None else older_than_days
        if days < 0:
            raise CommandError("--older-than-days must be 0 (keep) or a number of days")
        started = time.perf_counter()
        try:
            pruned = retention.prune(days=days or None, batch=batch, dry_run=dry_run)
        except retention.RetentionError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if dry_run else "deleted"
        if pruned.before is None:
            logs = "kept every route log (no retention: set FOS_ROUTE_LOG_RETENTION_DAYS or --older-than-days)"
        else:
            logs = (
                f"{verb} {pruned.route_logs} route logs and {pruned.attempts} attempts "
                f"created before {pruned.before:%Y-%m-%d %H:%M} UTC"
            )
        self.stdout.write(
            f"{logs}; {verb} {pruned.idempotency_keys} expired idempotency keys "
            f"({time.perf_counter() - started:.1f} s)"
        )
