"""What the console's views share about HTMX requests (django-htmx sets `request.htmx`)."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def wants_fragment(request: HtmxHttpRequest) -> bool:
    # A history restore needs the whole page, though htmx sends it.
    return bool(request.htmx) and not request.htmx.history_restore_request


def fragment_template(request: HtmxHttpRequest, page: str, fragment: str) -> str:
    """The page's template, or only its `fragment` partial for an HTMX request."""
    return f"{page}#{fragment}" if wants_fragment(request) else page


def fragment_target(request: HtmxHttpRequest, regions: tuple[str, ...]) -> str | None:
    """The region of the page an HTMX request asks for by its HX-Target, if it is one of `regions`."""
    target = request.htmx.target if wants_fragment(request) else None
    return target if target in regions else None
