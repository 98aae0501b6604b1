from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from registry import contracts
from registry.secret_refs import describe as describe_secret

# Route statuses that still bind the policy: a rejected or retired route never serves again.
LIVE_ROUTE_STATUSES = ("proposed", "approved", "active")


def _raise_if(errors: dict[str, list[str]]) -> None:
    errors = {field: problems for field, problems in errors.items() if problems}
    if errors:
        raise ValidationError(errors)


class Backend(models.Model):
    """One entry of the model registry: somewhere a call can go."""

    class Adapter(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        OLLAMA = "ollama", "Ollama"
        TOOL = "tool", "Deterministic tool"

    class Locality(models.TextChoices):
        LOCAL = "local", "local"
        HOSTED = "hosted", "hosted"

    HTTP_ADAPTERS = (Adapter.OPENAI, Adapter.ANTHROPIC, Adapter.OLLAMA)

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField("display name", max_length=120, blank=True)
    adapter = models.CharField(max_length=16, choices=Adapter.choices)
    base_url = models.CharField(max_length=500, blank=True, help_text="e.g. http://gpu-box:11434 or https://api.openai.com/v1")
    model = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=64, blank=True, help_text="Tool name, for tool backends.")
    config = models.JSONField(default=dict, blank=True, help_text="Tool configuration, for tool backends.")
    locality = models.CharField(max_length=8, choices=Locality.choices)
    secret_ref = models.CharField(
        "secret reference",
        max_length=300,
        blank=True,
        help_text="env:NAME or file:/absolute/path. Never the secret itself.",
    )
    cost_in_per_mtok = models.DecimalField(
        "USD per million input tokens", max_digits=12, decimal_places=6, default=Decimal("0")
    )
    cost_out_per_mtok = models.DecimalField(
        "USD per million output tokens", max_digits=12, decimal_places=6, default=Decimal("0")
    )
    timeout_s = models.FloatField("timeout (seconds)", default=30.0)
    enabled = models.BooleanField(default=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    @property
    def is_tool(self) -> bool:
        return self.adapter == self.Adapter.TOOL

    @property
    def secret_status(self) -> str:
        return describe_secret(self.secret_ref)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {"adapter": [], "base_url": [], "model": [], "tool": [], "config": []}
        if self.adapter in self.HTTP_ADAPTERS:
            if not self.base_url:
                errors["base_url"].append(f"required for the {self.adapter} adapter")
            if not self.model:
                errors["model"].append(f"required for the {self.adapter} adapter")
            if self.tool:
                errors["tool"].append("only tool backends name a tool")
        elif self.adapter == self.Adapter.TOOL:
            if not self.tool:
                errors["tool"].append("required for tool backends")
            else:
                problems = contracts.validate_tool_config(self.tool, self.config)
                if problems and problems[0].startswith("unknown tool"):
                    errors["tool"] += problems
                else:
                    errors["config"] += problems
        errors["base_url"] += contracts.validate_base_url(self.base_url)
        errors["secret_ref"] = contracts.validate_secret_ref(self.secret_ref)
        for field in ("cost_in_per_mtok", "cost_out_per_mtok"):
            value = getattr(self, field)
            if value is not None and value < 0:
                errors[field] = ["must not be negative"]
        if self.timeout_s is not None and self.timeout_s <= 0:
            errors["timeout_s"] = ["must be more than 0 seconds"]
        if self.pk and self.locality == self.Locality.HOSTED:
            private = (
                Capability.objects.filter(
                    privacy=Capability.Privacy.LOCAL_ONLY,
                    routes__backend_id=self.pk,
                    routes__status__in=LIVE_ROUTE_STATUSES,
                )
                .values_list("slug", flat=True)
                .distinct()
            )
            if private:
                errors["locality"] = [
                    "cannot be hosted: local_only capabilities route to this backend ("
                    + ", ".join(sorted(private))
                    + ")"
                ]
        _raise_if(errors)


class Capability(models.Model):
    """A capability contract: what kind of work, under which limits, verified how."""

    class Intent(models.TextChoices):
        CLASSIFICATION = "classification"
        EXTRACTION = "extraction"
        TRANSFORMATION = "transformation"
        LOOKUP = "lookup"
        JUDGMENT = "judgment"
        REVIEW = "review"
        GENERATION = "generation"

    class Privacy(models.TextChoices):
        LOCAL_ONLY = "local_only", "local only"
        HOSTED_ALLOWED = "hosted_allowed", "hosted allowed"

    class Fallback(models.TextChoices):
        NEXT_ROUTE = "next_route", "next route"
        FAIL_CLOSED = "fail_closed", "fail closed"

    class LogInput(models.TextChoices):
        HASH = "hash", "hash only"
        REDACTED = "redacted", "redacted preview"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, blank=True)
    intent = models.CharField(max_length=16, choices=Intent.choices)
    privacy = models.CharField(max_length=16, choices=Privacy.choices)
    max_cost_usd = models.DecimalField(
        "max cost per call (USD)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Empty: no limit.",
    )
    latency_budget_ms = models.PositiveIntegerField(
        "latency budget (ms)", default=30_000, validators=[MinValueValidator(1)]
    )
    fallback = models.CharField(max_length=16, choices=Fallback.choices, default=Fallback.NEXT_ROUTE)
    fallback_on = models.JSONField(default=contracts.default_fallback_on, blank=True)
    instructions = models.TextField(blank=True)
    instructions_private = models.BooleanField(
        default=False, help_text="Keep the instructions out of proof pages and exports."
    )
    verify = models.JSONField("verification rule", default=contracts.default_verify)
    log_input = models.CharField(max_length=16, choices=LogInput.choices, default=LogInput.HASH)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "capabilities"

    def __str__(self) -> str:
        return self.name or self.slug

    def clean(self) -> None:
        errors: dict[str, list[str]] = {
            "fallback_on": contracts.validate_fallback_on(self.fallback_on),
            "verify": contracts.validate_verify_rule(self.verify),
        }
        if self.pk and self.privacy == self.Privacy.LOCAL_ONLY:
            hosted = (
                Backend.objects.filter(
                    locality=Backend.Locality.HOSTED,
                    routes__capability_id=self.pk,
                    routes__status__in=LIVE_ROUTE_STATUSES,
                )
                .values_list("slug", flat=True)
                .distinct()
            )
            if hosted:
                errors["privacy"] = [
                    "cannot be local_only while routes go to hosted backends (" + ", ".join(sorted(hosted)) + ")"
                ]
        _raise_if(errors)


class Route(models.Model):
    """One row of the policy table: a capability served by a backend at a position."""

    class Status(models.TextChoices):
        PROPOSED = "proposed"
        APPROVED = "approved"
        ACTIVE = "active"
        REJECTED = "rejected"
        RETIRED = "retired"

    capability = models.ForeignKey(Capability, on_delete=models.CASCADE, related_name="routes")
    backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="routes")
    position = models.PositiveSmallIntegerField(default=0, help_text="0 is the primary; fallbacks follow in order.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ticket_ref = models.CharField("ticket reference", max_length=200, blank=True)
    # Set when a reviewer approves the route against a ticket. Changing such a route's backend
    # or position clears them and sends it back to review (see `needs_review_after`).
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["capability_id", "position", "id"]
        indexes = [
            # The policy snapshot: a capability's live routes in order.
            models.Index(fields=["capability", "status", "position"], name="route_cap_status_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.capability_id}#{self.position} -> {self.backend_id}"

    def needs_review_after(self, *, backend_id: int, position: int) -> bool:
        """Whether moving this route to `backend_id` at `position` must send it back to review."""
        return self.approved_at is not None and (backend_id != self.backend_id or position != self.position)

    def send_back_to_review(self) -> None:
        """Clear the approval: the route is a proposal again until a reviewer approves it anew."""
        self.status = Route.Status.PROPOSED
        self.approved_at = None
        self.approved_by = None

    def clean(self) -> None:
        if self.capability_id is None or self.backend_id is None:
            return
        if (
            self.status in LIVE_ROUTE_STATUSES
            and self.capability.privacy == Capability.Privacy.LOCAL_ONLY
            and self.backend.locality == Backend.Locality.HOSTED
        ):
            raise ValidationError(
                {"backend": [f"{self.backend.slug} is hosted and {self.capability.slug} is local_only"]}
            )


class PolicyRevision(models.Model):
    """Append-only record of every policy change, with the whole policy as it stood after it."""

    number = models.PositiveIntegerField(unique=True)
    author = models.CharField(max_length=150, help_text='A username, or "import".')
    created_at = models.DateTimeField(auto_now_add=True)
    summary = models.TextField()
    snapshot = models.JSONField()

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"revision {self.number}"

    @property
    def policy(self) -> dict[str, Any]:
        return self.snapshot
