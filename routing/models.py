from __future__ import annotations

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
