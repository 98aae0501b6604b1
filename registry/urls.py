from __future__ import annotations

from django.urls import path

from registry import views

app_name = "registry"

urlpatterns = [
    path("console/capabilities/", views.capability_list, name="capabilities"),
    path("console/capabilities/<slug:slug>/", views.capability_detail, name="capability"),
    path("console/capabilities/<slug:slug>/contract/", views.capability_edit, name="capability-edit"),
    path("console/capabilities/<slug:slug>/routes/<int:route_id>/move/", views.route_move, name="route-move"),
    path("console/capabilities/<slug:slug>/routes/<int:route_id>/toggle/", views.route_toggle, name="route-toggle"),
    path("console/revisions/", views.revision_list, name="revisions"),
    path("console/revisions/<int:number>/", views.revision_detail, name="revision"),
]
