"""manage.py rollup_route_logs [--days D | --all]

Recomputes the hourly rollup (routing.rollup) of every hour that has ended in the last D days
(default 7, the dashboard's longest window), or since the oldest route log with --all: after
a migration, a restore, or back-dated writes. Idempotent, and safe while the console and the
periodic task run: each day is recomputed in its own transaction.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Min
from django.utils import timezone

from routing import rollup
from routing.models import RouteLog

DAY = timedelta(days=1)


class Command(BaseCommand):
    help = "Recompute the hourly rollup of the route log (what the dashboard reads for whole hours)."

    def add_arguments(self, parser: CommandParser) -> None:
        span = parser.add_mutually_exclusive_group()
        span.add_argument("--days", type=float, default=7.0, help="The last D days (default 7).")
        span.add_argument("--all", action="store_true", dest="all_hours", help="Every hour since the oldest route log.")

    def handle(self, *args: Any, days: float, all_hours: bool, **options: Any) -> None:
        if days <= 0:
            raise CommandError("--days must be more than 0")
        started, now = time.perf_counter(), timezone.now()
        if all_hours:
            oldest = RouteLog.objects.aggregate(oldest=Min("created_at"))["oldest"]
            since = rollup.hour_of(oldest) if oldest else now
        else:
            since = rollup.hour_of(now - timedelta(days=days))
        hours = 0
        while since < now:
            hours += rollup.roll_up(since=since, until=min(since + DAY, now))
            since += DAY
            if options["verbosity"] > 1:
                self.stderr.write(f"  rolled up to {min(since, now):%Y-%m-%d %H:00}")
        self.stdout.write(f"rolled up {hours} hours in {time.perf_counter() - started:.1f} s")
