from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from routing.models import Attempt, Caller, RouteLog


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = ("index", "backend", "locality", "status", "error_class", "detail", "latency_ms", "tokens_in", "tokens_out", "cost_usd")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RouteLog)
class RouteLogAdmin(admin.ModelAdmin):
    """Read-only: route logs are evidence, written once by the router."""

    list_display = ("id", "created_at", "capability", "outcome", "backend", "caller", "latency_ms", "cost_usd")
    list_filter = ("outcome", "capability", "backend")
    search_fields = ("=id", "caller", "input_sha256")
    show_full_result_count = False  # a count over millions of rows would dominate the page
    inlines = [AttemptInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in RouteLog._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Caller)
class CallerAdmin(admin.ModelAdmin):
    """Callers are created with `manage.py create_caller NAME`, which shows the token once; here
    they are limited, narrowed to capabilities, or revoked (refused from the next request on)."""

    list_display = ("name", "token_prefix", "rate_limit_per_minute", "capabilities", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "token_prefix")
    fields = ("name", "token_prefix", "rate_limit_per_minute", "capabilities", "created_at", "revoked_at")
    readonly_fields = ("name", "token_prefix", "created_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected callers' tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Caller]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"revoked {count} caller token(s); they are refused from now on", messages.SUCCESS)
