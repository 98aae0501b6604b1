"""Console forms of the routing app: the route log's filters and the capability input boxes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.core.validators import validate_slug

from routing.models import RouteLog
from routing.stats import WINDOWS, Cursor, RouteLogFilters

MAX_INPUT_CHARS = 20_000


class RouteLogFilterForm(forms.Form):
    """Filters in the query string, so a filtered view is a link. Capability and backend offer
    the current policy's names but accept any slug: old entries may name retired ones."""

    capability = forms.ChoiceField(required=False)
    outcome = forms.ChoiceField(required=False, choices=[("", "any outcome"), *RouteLog.Outcome.choices])
    backend = forms.ChoiceField(required=False, label="Backend that answered")
    caller = forms.CharField(required=False, max_length=150, help_text="The exact caller name.")
    window = forms.ChoiceField(
        required=False, label="Time", choices=[("", "any time"), *[(key, w.label) for key, w in WINDOWS.items()]]
    )
    since = forms.DateTimeField(required=False, label="Since (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    # The filters' input rule would stretch a checkbox to a text field's width.
    live = forms.BooleanField(required=False, label="Live tail", widget=forms.CheckboxInput(attrs={"style": "min-width: 0"}))
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, capabilities: list[str], backends: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, known, anything in (("capability", capabilities, "any capability"), ("backend", backends, "any backend")):
            names = list(known)
            asked = self.data.get(name, "")
            if asked and asked not in names and _is_slug(asked):
                names.append(asked)
            self.fields[name].choices = [("", anything), *[(slug, slug) for slug in names]]

    def clean_cursor(self) -> Cursor | None:
        value = self.cleaned_data["cursor"]
        if not value:
            return None
        try:
            return Cursor.decode(value)
        except ValueError:
            raise forms.ValidationError(
                "This page link points nowhere in the route log: start again from the newest entries."
            ) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("window") and data.get("since"):
            raise forms.ValidationError("Choose a preset time window or a since time, not both.")
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "Must be later than since.")
        return data

    def filters(self, *, now: datetime) -> RouteLogFilters:
        data = self.cleaned_data
        since = data["since"]
        if data["window"]:
            since = now - WINDOWS[data["window"]].span
        return RouteLogFilters(
            capability=data["capability"],
            outcome=data["outcome"],
            backend=data["backend"],
            caller=data["caller"].strip(),
            since=since,
            until=data["until"],
        )


def _is_slug(value: str) -> bool:
    try:
        validate_slug(value)
    except forms.ValidationError:
        return False
    return len(value) <= 64


class CapabilityInputForm(forms.Form):
    """The dry-run and try-it boxes: one input text for a capability."""

    input = forms.CharField(
        strip=False,
        max_length=MAX_INPUT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Type an input first."},
    )

    def clean_input(self) -> str:
        value = self.cleaned_data["input"]
        if not value.strip():
            raise forms.ValidationError("Type an input first.")
        return value
