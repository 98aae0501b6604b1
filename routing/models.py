from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models


class RouteLog(models.Model):
    """One routed call, whatever happened: why each route was kept or skipped, what each attempt
    did, and what the caller got. Raw input is never stored: its SHA-256 and length are, plus a
    redacted preview when the capability asks for one."""

    class Outcome(models.TextChoices):
        PRIMARY = "primary"
        FALLBACK = "fallback"
        FAILED = "failed"
        REJECTED = "rejected"

    created_at = models.DateTimeField(db_index=False)
    caller = models.CharField(max_length=150, blank=True)
    capability = models.CharField(max_length=64)
    intent = models.CharField(max_length=16)
    privacy = models.CharField(max_length=16)
    policy_revision = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    backend = models.CharField(max_length=64, blank=True, help_text="The backend that answered, if any.")
    fallback_eligible = models.BooleanField()
    fallback_used = models.BooleanField()
    reasons = models.JSONField(default=list)
    verification = models.JSONField(null=True, blank=True)
    error_class = models.CharField(max_length=32, blank=True, help_text="Why the call failed, if it did.")
    input_sha256 = models.CharField(max_length=64)
    input_chars = models.PositiveIntegerField()
    input_preview = models.TextField(blank=True)
    latency_ms = models.FloatField()
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The route log's first page and its keyset pagination: newest first.
            models.Index(fields=["-created_at", "-id"], name="routelog_time"),
            # Route log filtered by capability, and the dashboard's per-capability figures.
            models.Index(fields=["capability", "-created_at"], name="routelog_cap_time"),
            # Route log filtered by outcome (failures, fallbacks).
            models.Index(fields=["outcome", "-created_at"], name="routelog_outcome_time"),
            # Route log filtered by the backend that answered.
            models.Index(fields=["backend", "-created_at"], name="routelog_backend_time"),
            # Route log filtered by caller, and a caller reading its own routes.
            models.Index(fields=["caller", "-created_at"], name="routelog_caller_time"),
        ]

    def __str__(self) -> str:
        return f"route {self.pk} {self.capability} {self.outcome}"


class Attempt(models.Model):
    """One try of one route within a routed call, in the order they ran."""

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"

    # No index of its own: the (route_log, index) unique constraint below serves lookups by route.
    route_log = models.ForeignKey(RouteLog, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    index = models.PositiveSmallIntegerField()
    backend = models.CharField(max_length=64)
    locality = models.CharField(max_length=8)
    adapter = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=Status.choices)
    error_class = models.CharField(max_length=32, blank=True)
    detail = models.TextField(blank=True, help_text="Upstream error text, redacted.")
    latency_ms = models.FloatField()
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    verification = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["route_log_id", "index"]
        constraints = [
            # A route page lists its attempts in order; the pair also serves that lookup.
            models.UniqueConstraint(fields=["route_log", "index"], name="attempt_route_index"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.index} of route {self.route_log_id} on {self.backend}"


class Caller(models.Model):
    """Product code that calls the router. Its token is shown once at creation and stored only
    as a SHA-256 hash (tokens are long random strings, so a fast hash is enough)."""

    name = models.SlugField(max_length=150, unique=True)
    token_sha256 = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=16, help_text="The token's first characters, to tell tokens apart.")
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the default from settings (none unless set)."
    )
    capabilities = models.JSONField(
        default=list, blank=True, help_text="Capability slugs this caller may use. Empty: all."
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def may_use(self, capability: str) -> bool:
        return not self.capabilities or capability in self.capabilities


class IdempotencyRecord(models.Model):
    """A caller's Idempotency-Key: the request it named (by hash) and, once done, the answer."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    caller = models.ForeignKey(Caller, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Keys are scoped per caller; the pair is also the lookup on every keyed request.
            models.UniqueConstraint(fields=["caller", "key"], name="idempotency_caller_key"),
        ]
        indexes = [
            # Purging expired keys.
            models.Index(fields=["expires_at"], name="idempotency_expires"),
        ]


class EvaluationCase(models.Model):
    """An input a capability is evaluated on, with the answer expected of it if there is one.

    A private case's input is stored (a comparison has to send it somewhere) but it never goes
    to a hosted backend, and its input and the outputs it drew are shown only inside the
    console, never on a published page."""

    # No index of its own: the (capability, id) index below serves lookups by capability.
    capability = models.ForeignKey(
        "registry.Capability", on_delete=models.CASCADE, related_name="evaluation_cases", db_index=False
    )
    name = models.CharField(max_length=120, blank=True, help_text="A short label for the case, e.g. 'refund in French'.")
    input = models.TextField()
    expected = models.TextField("expected output or label", blank=True)
    private = models.BooleanField(
        default=False, help_text="Never sent to a hosted backend; input and outputs are never published."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["capability_id", "id"]
        indexes = [
            # A capability's cases in order: the ticket page's list and the cases a run takes.
            models.Index(fields=["capability", "id"], name="evalcase_capability"),
        ]

    def __str__(self) -> str:
        return self.name or f"case {self.pk}"


class ComparisonRun(models.Model):
    """Routes run side by side on the same evaluation cases, as a background task.

    The routes (with their backends' specs) and the contract are frozen when the run is
    created, so a restarted run calls exactly what the first attempt called. A run is claimed
    by one worker at a time (`claim`), which proves it is alive through `heartbeat_at`."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"
        FAILED = "failed"

    FINISHED = (Status.DONE, Status.CANCELLED, Status.FAILED)

    # No index of its own: nothing lists runs by capability; PROTECT's check is rare.
    capability = models.ForeignKey(
        "registry.Capability", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    ticket_ref = models.CharField("ticket reference", max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # [{"route": id, "backend": slug, "position": n, "route_status": ..., "spec": {policy entry}}]
    routes = models.JSONField(default=list)
    contract = models.JSONField(default=dict, help_text="The capability's contract when the run was created.")
    baseline_route = models.ForeignKey(
        "registry.Route", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    cases = models.ManyToManyField(EvaluationCase, related_name="+")
    cells_total = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True, help_text="Why the run failed, if it did.")
    claim = models.CharField(max_length=32, blank=True, help_text="The worker attempt that holds the run.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A ticket's runs, newest first, on the ticket page.
            models.Index(fields=["ticket_ref", "-created_at"], name="comparison_ticket_time"),
        ]

    def __str__(self) -> str:
        return f"comparison {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def route_ids(self) -> list[int]:
        return [lane["route"] for lane in self.routes]


class ComparisonResult(models.Model):
    """One cell of a comparison: one case on one route. Never a route log: evaluation calls
    are not traffic. Written once; a restarted run skips the cells that have one."""

    class Status(models.TextChoices):
        OK = "ok", "answered"
        ERROR = "error", "error"
        NOT_RUN = "not_run", "not run"

    # No index of its own: the (run, case, route) constraint below serves lookups by run.
    run = models.ForeignKey(ComparisonRun, on_delete=models.CASCADE, related_name="results", db_index=False)
    # Indexed (the default): deleting a case or a route checks for results (PROTECT).
    case = models.ForeignKey(EvaluationCase, on_delete=models.PROTECT, related_name="+")
    route = models.ForeignKey("registry.Route", on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=64)
    locality = models.CharField(max_length=8)
    status = models.CharField(max_length=8, choices=Status.choices)
    output = models.TextField(blank=True)
    private = models.BooleanField(default=False, help_text="The case was private: never publish this output.")
    verification = models.JSONField(null=True, blank=True)
    passed = models.BooleanField(null=True, help_text="Verification passed; empty when nothing answered.")
    latency_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    error_class = models.CharField(max_length=32, blank=True)
    detail = models.TextField(blank=True, help_text="Redacted error detail, or why the cell was not run.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "case_id", "route_id"]
        constraints = [
            # One result per cell, so a restarted or duplicated task cannot write a cell twice;
            # the triple also serves loading a run's results and counting its progress.
            models.UniqueConstraint(fields=["run", "case", "route"], name="comparison_result_cell"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} case {self.case_id} route {self.route_id}: {self.status}"


class RollupHour(models.Model):
    """An hour of the route log that has been rolled up (routing.rollup), even one with no
    calls: the dashboard reads the hour from the rollup only if this row says it is final,
    and from RouteLog otherwise. Also the hour's attempts per backend, for backend health."""

    # Writes that were in flight when an hour ended commit within this; an hour rolled up
    # sooner after its end is provisional, and recomputed.
    GRACE = timedelta(minutes=2)

    hour = models.DateTimeField(help_text="The hour's start (UTC).")
    rolled_at = models.DateTimeField(help_text="When the route log was read for this rollup.")
    # {backend slug: [attempts, errors]} for the attempts of the hour's route logs: a handful
    # of backends, always read whole.
    backend_attempts = models.JSONField(default=dict)

    class Meta:
        ordering = ["hour"]
        constraints = [
            # One row per hour; also serves roll_up's delete and the dashboard's read of the
            # rolled-up hours of its window (a range of hours).
            models.UniqueConstraint(fields=["hour"], name="rollup_hour"),
        ]

    def __str__(self) -> str:
        return f"rollup of {self.hour:%Y-%m-%d %H:00}"

    def is_final(self) -> bool:
        """Rolled up late enough after the hour ended that every write of the hour was in."""
        return self.rolled_at >= self.hour + timedelta(hours=1) + self.GRACE


class RouteLogHour(models.Model):
    """The route logs of one hour, one capability and one outcome, rolled up: how many, their
    cost, and their latencies as a histogram from which percentiles are estimated (see
    routing.rollup for the buckets and the error bound)."""

    hour = models.DateTimeField(help_text="The hour's start (UTC).")
    capability = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=RouteLog.Outcome.choices)
    calls = models.PositiveIntegerField()
    cost_usd = models.DecimalField(max_digits=20, decimal_places=8)
    latency_ms_sum = models.FloatField()
    # [[bucket, calls], ...] in bucket order, non-empty buckets only.
    latency_histogram = models.JSONField(default=list)

    class Meta:
        ordering = ["hour", "capability", "outcome"]
        constraints = [
            # One row per key; also serves roll_up's delete and the dashboard's read of a
            # window's hours (a range on the first column).
            models.UniqueConstraint(fields=["hour", "capability", "outcome"], name="routeloghour_key"),
        ]

    def __str__(self) -> str:
        return f"{self.capability} {self.outcome} at {self.hour:%Y-%m-%d %H:00}: {self.calls} calls"
