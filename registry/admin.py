from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest

from registry.models import Backend, Capability, PolicyRevision, Route
from registry.policy import record_revision


class PolicyAdmin(admin.ModelAdmin):
    """Every save or delete through the admin records a policy revision with its author."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            verb = "changed" if change else "added"
            fields = ", ".join(form.changed_data) if change and form.changed_data else ""
            detail = f" ({fields})" if fields else ""
            record_revision(
                author=request.user.get_username(),
                summary=f"admin: {obj._meta.verbose_name} {obj} {verb}{detail}",
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            label = f"{obj._meta.verbose_name} {obj}"
            super().delete_model(request, obj)
            record_revision(author=request.user.get_username(), summary=f"admin: {label} deleted")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        with transaction.atomic():
            labels = ", ".join(str(obj) for obj in queryset)
            super().delete_queryset(request, queryset)
            record_revision(author=request.user.get_username(), summary=f"admin: deleted {labels}")


class RouteAdminForm(forms.ModelForm):
    """The review rules hold in the admin as in the console: only a reviewer's approval on the
    ticket page makes a proposed route live, and moving an approved route (another backend or
    position) sends it back to review."""

    class Meta:
        model = Route
        fields = ("capability", "position", "backend", "status", "proposed_by", "ticket_ref")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        route = self.instance
        self.stored = (route.status, route.backend_id, route.position) if route.pk else None

    def clean_status(self) -> str:
        status = self.cleaned_data["status"]
        was = self.stored[0] if self.stored else Route.Status.PROPOSED
        if was in (Route.Status.PROPOSED, Route.Status.REJECTED) and status != was:
            raise forms.ValidationError(
                f"A {was} route changes status only by a reviewer's decision on its ticket's page."
                if self.stored
                else "A route added here starts as proposed; a reviewer approves it on its ticket's page."
            )
        return status

    def save(self, commit: bool = True) -> Route:
        route = self.instance
        self.sent_back = bool(
            self.stored and route.approved_at is not None and (route.backend_id, route.position) != self.stored[1:]
        )
        if self.sent_back:
            route.send_back_to_review()
        return super().save(commit=commit)


def _warn_sent_back(request: HttpRequest, forms_: list[Any]) -> None:
    for form in forms_:
        if getattr(form, "sent_back", False):
            messages.warning(request, f"Route {form.instance} was approved and has moved: it is back in review.")


class RouteInline(admin.TabularInline):
    model = Route
    form = RouteAdminForm
    extra = 0
    fields = ("position", "backend", "status", "proposed_by", "ticket_ref", "approved_by", "approved_at")
    readonly_fields = ("approved_by", "approved_at")
    ordering = ("position", "id")


@admin.register(Backend)
class BackendAdmin(PolicyAdmin):
    list_display = ("slug", "name", "adapter", "locality", "model", "tool", "secret_resolves", "enabled")
    list_filter = ("adapter", "locality", "enabled")
    search_fields = ("slug", "name", "model")
    readonly_fields = ("secret_status", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("slug", "name", "adapter", "locality", "enabled")}),
        ("HTTP backends", {"fields": ("base_url", "model")}),
        ("Tool backends", {"fields": ("tool", "config")}),
        ("Secret and prices", {"fields": ("secret_ref", "secret_status", "cost_in_per_mtok", "cost_out_per_mtok")}),
        ("Limits and notes", {"fields": ("timeout_s", "notes", "created_at", "updated_at")}),
    )

    @admin.display(boolean=True, description="secret resolves")
    def secret_resolves(self, obj: Backend) -> bool | None:
        if not obj.secret_ref:
            return None
        return obj.secret_status == "resolves"

    @admin.display(description="secret reference status")
    def secret_status(self, obj: Backend) -> str:
        return obj.secret_status


@admin.register(Capability)
class CapabilityAdmin(PolicyAdmin):
    list_display = ("slug", "name", "intent", "privacy", "max_cost_usd", "latency_budget_ms", "fallback")
    list_filter = ("intent", "privacy", "fallback")
    search_fields = ("slug", "name")
    inlines = [RouteInline]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        _warn_sent_back(request, [f for fs in formsets for f in fs.forms])
        if any(fs.has_changed() for fs in formsets):
            record_revision(author=request.user.get_username(), summary=f"admin: routes of {form.instance} changed")


@admin.register(Route)
class RouteAdmin(PolicyAdmin):
    form = RouteAdminForm
    list_display = ("capability", "position", "backend", "status", "proposed_by", "ticket_ref")
    list_filter = ("status", "capability", "backend")
    fields = ("capability", "position", "backend", "status", "proposed_by", "ticket_ref", "approved_by", "approved_at")
    readonly_fields = ("approved_by", "approved_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _warn_sent_back(request, [form])


@admin.register(PolicyRevision)
class PolicyRevisionAdmin(admin.ModelAdmin):
    """Read-only: revisions are appended by policy changes, never edited."""

    list_display = ("number", "author", "created_at", "summary")
    readonly_fields = ("number", "author", "created_at", "summary", "snapshot")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
