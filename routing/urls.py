from __future__ import annotations

from django.urls import path

from routing import api, openai_compat, views

app_name = "routing"

urlpatterns = [
    # Service API. The JSON route endpoint is named api-route: `routing:route` is the console's
    # page for one route log entry.
    path("api/v1/route/<slug:capability>", api.route, name="api-route"),
    path("api/v1/routes/<int:route_id>", api.route_detail, name="route-detail"),
    path("v1/chat/completions", openai_compat.chat_completions, name="chat-completions"),
    path("v1/models", openai_compat.models, name="models"),
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
    # Console.
    path("console/", views.dashboard, name="dashboard"),
    path("console/routes/", views.route_log, name="route-log"),
    path("console/routes/<int:pk>/", views.route_page, name="route"),
    path("console/backends/", views.backends, name="backends"),
    path("console/backends/<slug:slug>/probe/", views.backend_probe, name="backend-probe"),
    path("console/probes/<str:task_id>/", views.probe_result, name="probe-result"),
    path("console/capabilities/<slug:slug>/dry-run/", views.dry_run, name="dry-run"),
    path("console/capabilities/<slug:slug>/try/", views.try_it, name="try-it"),
]
