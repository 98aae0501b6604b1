"""Tickets in the admin. Proposals and reviews are read-only here: a route's backend or
position changes through the ticket page (which sends an approved route back to review), and a
decision is evidence, written once. A proof is frozen when made: it can be looked at (or
deleted) here, and published or unpublished from its preview page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tickets.models import AcceptanceCriterion, ProofArtifact, Review, RouteProposal, Ticket


class CriterionInline(admin.TabularInline):
    model = AcceptanceCriterion
    extra = 0
    fields = ("metric", "comparison", "threshold", "note")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("key", "title", "capability", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("key", "title")
    readonly_fields = ("created_by", "created_at", "updated_at")
    inlines = [CriterionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The key names the ticket in routes, runs and revisions: fixed once created.
        return self.readonly_fields + (("key", "capability") if obj else ())


@admin.register(RouteProposal)
class RouteProposalAdmin(ReadOnlyAdmin):
    list_display = ("ticket", "route", "displaced", "created_at")


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("ticket", "proposal", "decision", "reviewer", "comparison_run", "created_at")
    list_filter = ("decision",)


@admin.register(ProofArtifact)
class ProofArtifactAdmin(ReadOnlyAdmin):
    list_display = ("slug", "ticket", "published_at", "created_by", "created_at")
    list_filter = (("published_at", admin.EmptyFieldListFilter),)
    search_fields = ("slug", "ticket__key")
