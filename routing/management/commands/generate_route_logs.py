"""manage.py generate_route_logs --count N [--days D] [--batch B] [--seed S]

Fills the route log with realistic calls for the current policy (or, with no policy, for a
made-up one), for demos and for the console's benchmark: about 85% answered by the primary,
10% by a fallback, 4% failed and 1% rejected; lognormal latencies per kind of backend; costs
from the backends' prices; a handful of callers; times spread evenly over the last D days, in
time order as a live system writes them. Each call has one attempt, two when it fell back, none
when it was rejected. The hours it wrote into are then rolled up (routing.rollup).

Rows are built as plain tuples, not model instances (a million of those would cost more than
the writing). On PostgreSQL they go in with COPY, a million in well under two minutes;
elsewhere with bulk_create; in batches either way, each batch one transaction.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

from routing import planner, rollup
from routing.adapters.base import BackendSpec
from routing.models import Attempt, RouteLog

OUTCOME_WEIGHTS = {"primary": 85, "fallback": 10, "failed": 4, "rejected": 1}
CALLERS = {"billing-app": 35, "support-bot": 30, "search-indexer": 20, "ops-cli": 10, "console:olivia-operator": 5}
# Why the primary failed before a fallback answered (classes the default fallback_on allows),
# and why a failed call failed (classes it does not, so no fallback was tried).
FALLBACK_CLASSES = {"timeout": 35, "connection": 20, "server_error": 25, "rate_limited": 20}
FAILED_CLASSES = {"bad_response": 40, "context_length": 25, "content_refused": 20, "auth": 15}
DETAILS = {
    "timeout": "no answer within the timeout",
    "connection": "connection refused",
    "server_error": "HTTP 503: upstream overloaded",
    "rate_limited": "HTTP 429: rate limit reached (retry after 2 s)",
    "bad_response": "the answer was not valid JSON",
    "context_length": "HTTP 400: prompt longer than the context window",
    "content_refused": "the provider refused to answer",
    "auth": "HTTP 401: invalid API key",
}
# Median latency (ms) and spread of a successful call, by kind of backend.
LATENCY = {"tool": (0.4, 0.5), "local": (380.0, 0.45), "hosted": (900.0, 0.55)}
SYNTHETIC_BACKENDS = {
    "spark-llama": BackendSpec(slug="spark-llama", adapter="ollama", locality="local", model="llama3.1:8b", timeout_s=20),
    "frontier": BackendSpec(
        slug="frontier", adapter="openai", locality="hosted", model="frontier-large",
        cost_in_per_mtok=Decimal("1.25"), cost_out_per_mtok=Decimal("10"), timeout_s=30,
    ),
    "utility-mini": BackendSpec(
        slug="utility-mini", adapter="openai", locality="hosted", model="utility-mini",
        cost_in_per_mtok=Decimal("0.15"), cost_out_per_mtok=Decimal("0.6"), timeout_s=15,
    ),
    "keyword-triage": BackendSpec(slug="keyword-triage", adapter="tool", locality="local", tool="keyword_classifier"),
}
SYNTHETIC_CAPABILITIES = {
    "classify-fast": ("classification", "hosted_allowed", ("spark-llama", "utility-mini", "keyword-triage")),
    "extract-invoice": ("extraction", "hosted_allowed", ("frontier", "spark-llama")),
    "summarize-ticket": ("generation", "hosted_allowed", ("utility-mini", "frontier")),
    "redact-local": ("transformation", "local_only", ("spark-llama", "keyword-triage")),
}

# Column order of the generated rows. Checked against the models at start, so a new field
# stops the command with a message instead of writing rows without it.
LOG_COLUMNS = (
    "id", "created_at", "caller", "capability", "intent", "privacy", "policy_revision", "outcome", "backend",
    "fallback_eligible", "fallback_used", "reasons", "verification", "error_class", "input_sha256", "input_chars",
    "input_preview", "latency_ms", "cost_usd", "tokens_in", "tokens_out", "metadata",
)
ATTEMPT_COLUMNS = (
    "route_log_id", "index", "backend", "locality", "adapter", "status", "error_class", "detail", "latency_ms",
    "tokens_in", "tokens_out", "cost_usd", "verification",
)
PASSED = {"passed": True, "detail": "ok"}
NO_METADATA: dict[str, Any] = {}

LogRow = list[Any]  # values in LOG_COLUMNS order (id None until written)
AttemptRow = list[Any]  # values in ATTEMPT_COLUMNS order (route_log_id None until written)


@dataclass(frozen=True)
class Route:
    spec: BackendSpec
    kind: str  # tool | local | hosted: what its latency looks like
    price_in: float  # USD per token
    price_out: float


@dataclass(frozen=True)
class Capability:
    slug: str
    intent: str
    privacy: str
    routes: tuple[Route, ...]
    fallback_eligible: bool


class Command(BaseCommand):
    help = "Generate realistic route logs and attempts for the current policy (for demos and benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="How many route logs to write.")
        parser.add_argument("--days", type=float, default=7.0, help="Spread them over the last D days (default 7).")
        parser.add_argument("--batch", type=int, default=10_000, help="Rows per batch (default 10000).")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable data.")

    def handle(self, *args: Any, count: int, days: float, batch: int, seed: int | None, **options: Any) -> None:
        if count < 1:
            raise CommandError("--count must be at least 1")
        if days <= 0:
            raise CommandError("--days must be more than 0")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        _check_columns()
        started = time.perf_counter()
        generator = Generator(seed=seed, days=days, count=count)
        written = attempts = 0
        while written < count:
            size = min(batch, count - written)
            attempts += _write((generator.call(written + i) for i in range(size)), size=size)
            written += size
            if options["verbosity"] > 1:
                self.stderr.write(f"  {written} / {count}")
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {RouteLog._meta.db_table}, {Attempt._meta.db_table}")
        # The rows are back-dated, into hours that may be rolled up already: recompute every
        # hour they touched, as a live system's rollup would stand.
        hours = rollup.roll_up(since=rollup.hour_of(generator.start), until=timezone.now())
        elapsed = time.perf_counter() - started
        names = ", ".join(c.slug for c in generator.capabilities)
        self.stdout.write(
            f"generated {written} route logs and {attempts} attempts over {days:g} days for {names}, "
            f"rolled up {hours} hours, in {elapsed:.1f} s ({connection.vendor})"
        )


class Generator:
    """Makes one call's route log row and attempt rows at a time, from a frozen view of the
    policy. Draws use precomputed cumulative weights: random.choices costs more per call."""

    def __init__(self, *, seed: int | None, days: float, count: int) -> None:
        self.random = random.Random(seed)
        snapshot = planner.load_snapshot()
        self.revision = snapshot.revision
        self.capabilities = _capabilities(snapshot) or _synthetic_capabilities()
        self.end = timezone.now()
        self.span_s = days * 86400
        self.start = self.end - timedelta(seconds=self.span_s)
        self.count = count
        # Traffic falls off with a capability's rank: 1, 1/2, 1/3...
        self.pick_capability = self._picker(self.capabilities, [1 / (rank + 1) for rank in range(len(self.capabilities))])
        self.pick_outcome = self._picker(list(OUTCOME_WEIGHTS), list(OUTCOME_WEIGHTS.values()))
        self.pick_caller = self._picker(list(CALLERS), list(CALLERS.values()))
        self.pick_error = {
            "fallback": self._picker(list(FALLBACK_CLASSES), list(FALLBACK_CLASSES.values())),
            "failed": self._picker(list(FAILED_CLASSES), list(FAILED_CLASSES.values())),
        }
        self._reasons: dict[tuple[str, str, str], list[str]] = {}

    def _picker(self, items: list[Any], weights: list[float]) -> Any:
        cumulative = list(itertools.accumulate(weights))
        total, draw = cumulative[-1], self.random.random

        def pick() -> Any:
            return items[bisect.bisect_right(cumulative, draw() * total)]

        return pick

    def call(self, index: int) -> tuple[LogRow, list[AttemptRow]]:
        rnd = self.random
        capability: Capability = self.pick_capability()
        outcome: str = self.pick_outcome()
        if outcome == "fallback" and not capability.fallback_eligible:
            outcome = "primary"
        # Evenly spread and in order, with jitter inside each slot, as a live system writes them.
        created_at = self.start + timedelta(seconds=self.span_s * (index + rnd.random()) / self.count)
        input_chars = max(1, int(rnd.lognormvariate(5.4, 0.8)))  # median about 220
        tokens_in = input_chars // 4 + 40
        tokens_out = max(1, int(planner.EXPECTED_OUTPUT_TOKENS.get(capability.intent, 256) * (0.3 + 0.9 * rnd.random())))
        attempts: list[AttemptRow] = []
        error_class = reason_class = ""
        if outcome == "rejected":
            latency = 0.2 + 1.8 * rnd.random()
            error_class = "rate_limited"
        else:
            if outcome != "primary":
                reason_class = self.pick_error[outcome]()
                attempts.append(self._attempt(capability.routes[0], 0, reason_class, tokens_in, 0))
            if outcome == "primary":
                attempts.append(self._attempt(capability.routes[0], 0, "", tokens_in, tokens_out))
            elif outcome == "fallback":
                attempts.append(self._attempt(capability.routes[1], 1, "", tokens_in, tokens_out))
            else:
                error_class = reason_class
            latency = sum(a[8] for a in attempts) + 0.3 + 2.7 * rnd.random()
        answered = outcome in ("primary", "fallback")
        row = [
            None, created_at, self.pick_caller(), capability.slug, capability.intent, capability.privacy,
            self.revision, outcome, attempts[-1][2] if answered else "",
            capability.fallback_eligible and outcome != "rejected", outcome == "fallback",
            self._reasons_for(capability, outcome, reason_class), PASSED if answered else None, error_class,
            f"{rnd.getrandbits(256):064x}", input_chars, "", round(latency, 3),
            round(sum(a[11] for a in attempts), 8), sum(a[9] for a in attempts), sum(a[10] for a in attempts),
            NO_METADATA,
        ]
        return row, attempts

    def _attempt(self, route: Route, index: int, error_class: str, tokens_in: int, tokens_out: int) -> AttemptRow:
        if error_class == "timeout":
            latency = route.spec.timeout_s * 1000
        elif error_class:
            latency = 5 + 115 * self.random.random()
        else:
            median, spread = LATENCY[route.kind]
            latency = self.random.lognormvariate(math.log(median), spread)
        if error_class:
            tokens_out = 0
            if error_class != "server_error":
                tokens_in = 0
        cost = round(tokens_in * route.price_in + tokens_out * route.price_out, 8)
        return [
            None, index, route.spec.slug, route.spec.locality, route.spec.adapter,
            "error" if error_class else "ok", error_class, DETAILS.get(error_class, ""), round(latency, 3),
            tokens_in, tokens_out, cost, None if error_class else PASSED,
        ]

    def _reasons_for(self, capability: Capability, outcome: str, error_class: str) -> list[str]:
        """The reasons the executor would give; a handful of distinct lists, shared by rows."""
        key = (capability.slug, outcome, error_class)
        if key not in self._reasons:
            if outcome == "rejected":
                lines = ["rejected: rate limit of 60 requests per minute reached"]
            else:
                lines = [
                    f"{route.spec.slug} ({'primary' if position == 0 else f'fallback {position}'}): "
                    f"kept ({route.spec.locality}, {route.spec.adapter})"
                    for position, route in enumerate(capability.routes)
                ]
                first = capability.routes[0].spec.slug
                if outcome == "primary":
                    lines.append(f"{first}: answered, verification passed")
                else:
                    lines.append(f"{first}: failed: {error_class} ({DETAILS[error_class]})")
                    if outcome == "fallback":
                        lines.append(f"{capability.routes[1].spec.slug}: answered, verification passed")
                    else:
                        lines.append(f"not falling back: {error_class} is not in fallback_on")
            self._reasons[key] = lines
        return self._reasons[key]


def _route(spec: BackendSpec) -> Route:
    return Route(
        spec=spec,
        kind="tool" if spec.adapter == "tool" else spec.locality,
        price_in=float(spec.cost_in_per_mtok) / 1_000_000,
        price_out=float(spec.cost_out_per_mtok) / 1_000_000,
    )


def _capabilities(snapshot: planner.PolicySnapshot) -> list[Capability]:
    found = []
    for spec in sorted(snapshot.capabilities.values(), key=lambda c: c.slug):
        routes = tuple(_route(snapshot.backends[slug]) for slug in spec.routes if slug in snapshot.backends)
        if routes:
            found.append(
                Capability(
                    slug=spec.slug, intent=spec.intent, privacy=spec.privacy, routes=routes,
                    fallback_eligible=spec.fallback == "next_route" and len(routes) > 1,
                )
            )
    return found


def _synthetic_capabilities() -> list[Capability]:
    return [
        Capability(
            slug=slug, intent=intent, privacy=privacy, routes=tuple(_route(SYNTHETIC_BACKENDS[s]) for s in routes),
            fallback_eligible=len(routes) > 1,
        )
        for slug, (intent, privacy, routes) in SYNTHETIC_CAPABILITIES.items()
    ]


def _check_columns() -> None:
    for model, columns, skip in ((RouteLog, LOG_COLUMNS, ()), (Attempt, ATTEMPT_COLUMNS, ("id",))):
        fields = {f.attname for f in model._meta.concrete_fields} - set(skip)
        if fields != set(columns):
            raise CommandError(
                f"{model.__name__} has fields this command does not generate, or lacks some it does: "
                f"{sorted(fields ^ set(columns))}; update LOG_COLUMNS / ATTEMPT_COLUMNS"
            )


def _write(calls: Iterator[tuple[LogRow, list[AttemptRow]]], *, size: int) -> int:
    """Write one batch of `size` calls in one transaction; returns how many attempts went with them."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return _copy(calls, size=size)
        calls = list(calls)
        logs = RouteLog.objects.bulk_create([RouteLog(**dict(zip(LOG_COLUMNS[1:], row[1:]))) for row, _ in calls])
        attempts = [
            Attempt(**dict(zip(ATTEMPT_COLUMNS, [log.pk, *attempt[1:]])))
            for log, (_, tries) in zip(logs, calls)
            for attempt in tries
        ]
        Attempt.objects.bulk_create(attempts)
        return len(attempts)


_JSON_LOG = [i for i, name in enumerate(LOG_COLUMNS) if name in ("reasons", "verification", "metadata")]
_JSON_ATTEMPT = [ATTEMPT_COLUMNS.index("verification")]


def _copy(calls: Iterator[tuple[LogRow, list[AttemptRow]]], *, size: int) -> int:
    """COPY a batch in: the route logs as they are generated (PostgreSQL parses and indexes
    them on its own core while Python makes the next ones), then their attempts."""
    quote = connection.ops.quote_name
    log_table, attempt_table = RouteLog._meta.db_table, Attempt._meta.db_table
    # JSON values are a few shared objects (see _reasons_for), so each is encoded once.
    encoded: dict[int, str] = {}

    def as_json(value: Any) -> str | None:
        if value is None:
            return None
        key = id(value)
        if key not in encoded:
            encoded[key] = json.dumps(value)
        return encoded[key]

    connection.ensure_connection()
    pending: list[AttemptRow] = []
    with connection.connection.cursor() as cursor:
        # Ids from the table's own sequence, so rows the router writes later never collide.
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [log_table, size])
        ids = [pk for (pk,) in cursor.fetchall()]
        columns = ", ".join(quote(n) for n in LOG_COLUMNS)
        with cursor.copy(f"COPY {quote(log_table)} ({columns}) FROM STDIN", writer=QueuedLibpqWriter(cursor)) as copy:
            for (row, attempts), pk in zip(calls, ids):
                row[0] = pk
                for i in _JSON_LOG:
                    row[i] = as_json(row[i])
                copy.write_row(row)
                for attempt in attempts:
                    attempt[0] = row[0]
                    for i in _JSON_ATTEMPT:
                        attempt[i] = as_json(attempt[i])
                    pending.append(attempt)
        columns = ", ".join(quote(n) for n in ATTEMPT_COLUMNS)
        with cursor.copy(f"COPY {quote(attempt_table)} ({columns}) FROM STDIN", writer=QueuedLibpqWriter(cursor)) as copy:
            for attempt in pending:
                copy.write_row(attempt)
    return len(pending)
