from __future__ import annotations

from django.urls import path

from routing import api, openai_compat

app_name = "routing"

urlpatterns = [
    path("api/v1/route/<slug:capability>", api.route, name="route"),
    path("api/v1/routes/<int:route_id>", api.route_detail, name="route-detail"),
    path("v1/chat/completions", openai_compat.chat_completions, name="chat-completions"),
    path("v1/models", openai_compat.models, name="models"),
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
]
