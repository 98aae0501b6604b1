from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.defaults import bad_request, page_not_found, permission_denied, server_error
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("routing.urls")),
    path("", include("registry.urls")),
    path("", include("tickets.urls")),
    path("", RedirectView.as_view(url="/console/", permanent=False)),
]

# Service paths answer JSON even when no view matched or a view crashed.
API_PREFIXES = ("/api/", "/v1/", "/healthz", "/readyz")


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        from routing.api import error_response

        return error_response(400, "invalid_request", "the request could not be read")
    return bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        from routing.api import error_response

        return error_response(403, "forbidden", "this caller may not do this")
    return permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        from routing.api import error_response

        return error_response(404, "not_found", f"no such endpoint: {request.method} {request.path}")
    return page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        from routing.api import error_response

        return error_response(500, "internal_error", "the server failed to answer; the error is logged")
    return server_error(request)
