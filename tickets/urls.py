from __future__ import annotations

from django.urls import path

from tickets import views

app_name = "tickets"

urlpatterns = [
    path("console/tickets/", views.ticket_list, name="list"),
    path("console/tickets/new/", views.ticket_create, name="create"),
    path("console/tickets/<str:key>/", views.ticket_detail, name="detail"),
    path("console/tickets/<str:key>/criteria/", views.criterion_add, name="criterion-add"),
    path("console/tickets/<str:key>/cases/", views.case_add, name="case-add"),
    path("console/tickets/<str:key>/proposals/", views.proposal_add, name="proposal-add"),
    path("console/tickets/<str:key>/proposals/<int:proposal_id>/edit/", views.proposal_edit, name="proposal-edit"),
    path("console/tickets/<str:key>/proposals/<int:proposal_id>/review/", views.proposal_review, name="proposal-review"),
    path("console/tickets/<str:key>/comparisons/", views.comparison_start, name="comparison-start"),
    path("console/comparisons/<int:run_id>/", views.comparison_detail, name="comparison"),
    path("console/comparisons/<int:run_id>/progress/", views.comparison_progress, name="comparison-progress"),
    path("console/comparisons/<int:run_id>/cancel/", views.comparison_cancel, name="comparison-cancel"),
    path("console/comparisons/<int:run_id>/resume/", views.comparison_resume, name="comparison-resume"),
]
