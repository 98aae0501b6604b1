from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from registry import contracts
from registry.models import Capability, Route
from registry.route_order import DIRECTIONS, approvals_lost, enable_needs_review, enable_position, moved_order

# The form field holding each verification kind's parameter.
VERIFY_PARAMETER_FIELDS: dict[str, str] = {
    "one_of": "verify_values",
    "regex": "verify_pattern",
    "json_schema": "verify_schema",
    "max_chars": "verify_limit",
}


def _split_values(text: str) -> list[str]:
    """One value per line; a single line may list values separated by commas."""
    lines = text.splitlines() if "\n" in text.strip() else text.split(",")
    return [value.strip() for value in lines if value.strip()]


class ContractForm(forms.ModelForm):
    """A capability's contract. The model's full_clean() judges it, so the rules are the ones the
    admin and the policy file apply (privacy against hosted routes, limits, error classes); the
    verification rule is assembled from one field per parameter and checked by the same validator
    the model uses, with each problem shown beside the parameter it is about."""

    fallback_on = forms.MultipleChoiceField(
        label="Fall back on",
        choices=[(name, name) for name in contracts.ERROR_CLASSES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Failure classes that may try the next route.",
    )
    verify = forms.ChoiceField(label="Verification", choices=[(kind, kind) for kind in contracts.VERIFY_KINDS])
    verify_values = forms.CharField(
        label="Allowed answers (one_of)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, or separated by commas.",
    )
    verify_pattern = forms.CharField(
        label="Pattern (regex)", required=False, help_text="Must match the whole answer.", strip=False
    )
    verify_schema = forms.CharField(
        label="JSON schema (json_schema)", required=False, widget=forms.Textarea(attrs={"rows": 4, "class": "mono"})
    )
    verify_limit = forms.IntegerField(label="Character limit (max_chars)", required=False)

    class Meta:
        model = Capability
        fields = [
            "privacy",
            "max_cost_usd",
            "latency_budget_ms",
            "fallback",
            "fallback_on",
            "verify",
            "instructions",
            "instructions_private",
            "log_input",
        ]
        widgets = {"instructions": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rule = self.instance.verify if isinstance(self.instance.verify, dict) else {}
        self.initial["verify"] = rule.get("kind", "non_empty")
        if isinstance(rule.get("values"), list):
            self.initial["verify_values"] = "\n".join(map(str, rule["values"]))
        self.initial["verify_pattern"] = rule.get("pattern", "")
        if "schema" in rule:
            self.initial["verify_schema"] = json.dumps(rule["schema"], indent=2, ensure_ascii=False)
        self.initial["verify_limit"] = rule.get("limit")
        if isinstance(self.instance.max_cost_usd, Decimal):
            self.initial["max_cost_usd"] = self.instance.max_cost_usd.normalize()
        self.fields["max_cost_usd"].help_text = "USD per call; empty for no limit."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind = cleaned.get("verify")
        if kind is None:
            return cleaned
        rule: dict[str, Any] = {"kind": kind}
        parameter = VERIFY_PARAMETER_FIELDS.get(kind)
        if kind == "one_of" and cleaned.get("verify_values"):
            rule["values"] = _split_values(cleaned["verify_values"])
        elif kind == "regex" and cleaned.get("verify_pattern"):
            rule["pattern"] = cleaned["verify_pattern"]
        elif kind == "json_schema" and cleaned.get("verify_schema", "").strip():
            try:
                rule["schema"] = json.loads(cleaned["verify_schema"])
            except ValueError as exc:
                self.add_error("verify_schema", f"not valid JSON: {exc}")
                del cleaned["verify"]  # keep the stored rule on the instance; the form is invalid anyway
                return cleaned
        elif kind == "max_chars" and cleaned.get("verify_limit") is not None:
            rule["limit"] = cleaned["verify_limit"]
        problems = contracts.validate_verify_rule(rule)
        if problems:
            self.add_error(parameter or "verify", problems)
            del cleaned["verify"]
            return cleaned
        cleaned["verify"] = rule
        return cleaned


class _RouteChangeForm(forms.Form):
    """A change to one `route` among the capability's active `routes`. A change that sends an
    approved route back to review must say so: `confirm` carries the operator's yes."""

    confirm = forms.BooleanField(required=False)

    def __init__(self, *args: Any, routes: list[Route], route: Route, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes, self.route = routes, route


class RouteMoveForm(_RouteChangeForm):
    """Move one active route up or down. A move that changes the rank of an approved route
    sends it back to review."""

    direction = forms.ChoiceField(choices=[(d, d) for d in DIRECTIONS])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        direction = cleaned.get("direction")
        if direction is None:
            return cleaned
        if self.route.pk not in {route.pk for route in self.routes}:
            raise ValidationError(f"{self.route.backend.slug} is not active: only active routes are ordered here.")
        order = moved_order(routes=self.routes, route_id=self.route.pk, direction=direction)
        if order is None:
            raise ValidationError(f"{self.route.backend.slug} is already {'first' if direction == 'up' else 'last'}.")
        lost = approvals_lost(before=self.routes, after=order)
        if lost and not cleaned.get("confirm"):
            names = ", ".join(route.backend.slug for route in lost)
            raise ValidationError(
                f"Moving {self.route.backend.slug} {direction} sends {names} back to review; tick the box to confirm."
            )
        cleaned["order"] = order
        return cleaned


class RouteToggleForm(_RouteChangeForm):
    """Disable an active route, or enable a retired one. Proposed and approved routes are
    decided in tickets; enabling re-checks the capability's privacy boundary."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        route = self.route
        if route.status == Route.Status.ACTIVE:
            cleaned["enabled"] = False
            return cleaned
        if route.status != Route.Status.RETIRED:
            raise ValidationError(f"{route.backend.slug} is {route.status}: its review happens in its ticket.")
        if any(other.backend_id == route.backend_id for other in self.routes):
            raise ValidationError(f"{route.backend.slug} already has an active route here.")
        route.status = Route.Status.ACTIVE  # judged as it would stand, not saved here
        try:
            route.full_clean()
        except ValidationError as exc:
            raise ValidationError([f"Cannot enable {route.backend.slug}: {m}" for m in exc.messages]) from None
        finally:
            route.status = Route.Status.RETIRED
        if enable_needs_review(route=route, routes=self.routes) and not cleaned.get("confirm"):
            position = enable_position(route=route, routes=self.routes)
            raise ValidationError(
                f"Enabling {route.backend.slug} at position {position} sends it back to review; "
                "tick the box to confirm."
            )
        cleaned["enabled"] = True
        return cleaned
