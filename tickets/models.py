"""Tickets: the reason a route changes, the bar it has to clear, and the decision taken.

A ticket is about one capability. It holds acceptance criteria (metric, at least / at most,
threshold), route proposals (a `registry.Route` in status proposed, linked here), and reviews:
a reviewer's approval or rejection of a proposal, citing a comparison run.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import models
from django.urls import reverse

KEY_PATTERN = r"^[A-Z]{1,10}-[0-9]{1,7}\Z"
COMMIT_SHA = re.compile(r"^[0-9a-f]{7,40}\Z")


def is_web_url(value: str) -> bool:
    """True for an absolute http(s) URL: the only kind a page turns into a link."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validate_commit_ref(value: str) -> None:
    if value and not (COMMIT_SHA.match(value) or is_web_url(value)):
        raise ValidationError("enter a commit SHA (7 to 40 lowercase hex digits) or an http(s) URL")


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted", "accepted (a route was approved)"
        CLOSED = "closed"

    key = models.CharField(
        max_length=20,
        unique=True,
        validators=[RegexValidator(KEY_PATTERN, "a key is uppercase letters, a dash and digits, like FOS-142")],
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    capability = models.ForeignKey(
        "registry.Capability", on_delete=models.PROTECT, related_name="tickets", db_index=False
    )
    external_url = models.URLField(
        "external URL",
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="The issue in your tracker (http or https).",
    )
    commit_ref = models.CharField(
        "commit reference",
        max_length=500,
        blank=True,
        validators=[validate_commit_ref],
        help_text="The commit that goes with it: a SHA or a URL.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The ticket list, newest first. (`key` is unique, which serves the detail page.)
            models.Index(fields=["-created_at", "-id"], name="ticket_time"),
            # PROTECT's check when a capability is deleted, and a capability's tickets.
            models.Index(fields=["capability"], name="ticket_capability"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("tickets:detail", kwargs={"key": self.key})

    @property
    def external_link(self) -> str:
        """The external URL when it may become a link, else ""."""
        return self.external_url if is_web_url(self.external_url) else ""

    @property
    def commit_link(self) -> str:
        return self.commit_ref if is_web_url(self.commit_ref) else ""


class AcceptanceCriterion(models.Model):
    """A bar a proposed route must clear in a comparison run to be approved."""

    class Metric(models.TextChoices):
        # Values are routing.comparisons.METRICS.
        VERIFICATION_PASS_RATE = "verification_pass_rate", "verification pass rate"
        LATENCY_P95_MS = "latency_p95_ms", "latency p95 (ms)"
        MEAN_COST_USD = "mean_cost_usd", "mean cost per call (USD)"
        ERROR_RATE = "error_rate", "error rate"
        FALLBACK_RATE = "fallback_rate", "fallback rate"
        AGREEMENT_WITH_BASELINE = "agreement_with_baseline", "agreement with the baseline route"

    class Comparison(models.TextChoices):
        AT_LEAST = "at_least", "at least"
        AT_MOST = "at_most", "at most"

    RATES = (
        Metric.VERIFICATION_PASS_RATE,
        Metric.ERROR_RATE,
        Metric.FALLBACK_RATE,
        Metric.AGREEMENT_WITH_BASELINE,
    )

    # No index of its own: the (ticket, id) index below serves lookups by ticket.
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="criteria", db_index=False)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    comparison = models.CharField(max_length=8, choices=Comparison.choices)
    threshold = models.DecimalField(max_digits=14, decimal_places=6)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket_id", "id"]
        verbose_name_plural = "acceptance criteria"
        indexes = [
            # A ticket's criteria in order, on its page and when a review is judged.
            models.Index(fields=["ticket", "id"], name="criterion_ticket"),
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} {self.get_comparison_display()} {self.threshold_text}"

    @property
    def threshold_text(self) -> str:
        # "f": never an exponent (Decimal("2000").normalize() prints as 2E+3).
        value = format(self.threshold.normalize(), "f") if self.threshold is not None else ""
        if self.metric in self.RATES:
            return f"{value} ({self.threshold * 100:.4g}%)"
        if self.metric == self.Metric.LATENCY_P95_MS:
            return f"{value} ms"
        if self.metric == self.Metric.MEAN_COST_USD:
            return f"${value}"
        return str(value)

    def clean(self) -> None:
        if self.threshold is None:
            return
        if self.threshold < 0:
            raise ValidationError({"threshold": "must not be negative"})
        if self.metric in self.RATES and self.threshold > 1:
            raise ValidationError({"threshold": "a rate is between 0 and 1 (0.95 for 95%)"})


class RouteProposal(models.Model):
    """An operator's proposal, under a ticket, of a route: a backend at a position of the
    ticket's capability. The route itself is a `registry.Route` in status proposed: it serves no
    traffic until a reviewer approves it."""

    class Displaced(models.TextChoices):
        SHIFT = "shift", "moves down one place"
        RETIRE = "retire", "is retired"

    # No index of its own: the (ticket, id) index below serves lookups by ticket.
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="proposals", db_index=False)
    # Unique: a route is proposed once; the index also finds a route's proposal.
    route = models.OneToOneField("registry.Route", on_delete=models.PROTECT, related_name="proposal")
    displaced = models.CharField(
        "the route now at that place",
        max_length=8,
        choices=Displaced.choices,
        default=Displaced.SHIFT,
        help_text="At position 0 this replaces the primary: keep the old one as a fallback, or retire it.",
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket_id", "id"]
        indexes = [
            # A ticket's proposals in order, on its page.
            models.Index(fields=["ticket", "id"], name="proposal_ticket"),
        ]

    def __str__(self) -> str:
        return f"{self.ticket.key}: {self.route}"


class Review(models.Model):
    """A reviewer's decision on a proposal, with the evidence it rests on. Append-only."""

    class Decision(models.TextChoices):
        APPROVED = "approved"
        REJECTED = "rejected"

    # No index of its own: the (ticket, created_at) index below serves lookups by ticket.
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="reviews", db_index=False)
    # Indexed (the default): a proposal's decisions, and PROTECT's check.
    proposal = models.ForeignKey(RouteProposal, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField()
    # Indexed (the default): PROTECT's check when a run is deleted.
    comparison_run = models.ForeignKey(
        "routing.ComparisonRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    override_reason = models.TextField(
        blank=True, help_text="Why the route is approved although the run does not meet every criterion."
    )
    # The criteria as judged at the time, so the decision reads the same if criteria change.
    criteria_results = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket_id", "created_at", "id"]
        indexes = [
            # A ticket's decisions in order, on its page.
            models.Index(fields=["ticket", "created_at"], name="review_ticket_time"),
        ]

    def __str__(self) -> str:
        return f"{self.ticket.key}: {self.decision} by {self.reviewer}"


class ProofArtifact(models.Model):
    """A sanitized snapshot of a ticket's evidence, frozen when made (see tickets.proof).

    `content` is built once, from an allow-list of fields, and never rebuilt: later changes to
    the policy, the route logs or the comparison behind it leave it as it was. Publishing only
    sets `published_at`; the public page and the exports render `content` and nothing else.
    """

    class SampleOutcome(models.TextChoices):
        """Which route log entries a proof samples (the most recent of the capability)."""

        ANY = "any", "any outcome"
        PRIMARY = "primary", "answered by the primary"
        FALLBACK = "fallback", "answered by a fallback"
        FAILED = "failed", "failed"

    # The only identifier a proof shows: "<ticket key>-<8 random characters>".
    slug = models.SlugField(max_length=40, unique=True)
    # PROTECT: a published proof is evidence someone may have linked to; deleting its ticket
    # should first be a decision about the proof.
    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="proofs", db_index=False)
    # Which run it was built from, for the console only (never part of `content`).
    comparison_run = models.ForeignKey(
        "routing.ComparisonRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="Empty: not published.")
    schema_version = models.PositiveSmallIntegerField(default=1)
    content = models.JSONField(help_text="The frozen, sanitized snapshot (tickets/proof_schema.json).")
    redaction_counts = models.JSONField(default=dict, blank=True, help_text="Redactions made, by kind.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A ticket's proofs, newest first, on its page. (`slug` is unique, which serves
            # the preview and the public page.)
            models.Index(fields=["ticket", "-created_at"], name="proof_ticket_time"),
        ]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("tickets:proof", kwargs={"slug": self.slug})

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def public_url(self) -> str:
        return reverse("tickets:proof-public", kwargs={"slug": self.slug})
