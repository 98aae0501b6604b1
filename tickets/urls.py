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
    path("console/tickets/<str:key>/proofs/", views.proof_create, name="proof-create"),
    path("console/comparisons/<int:run_id>/", views.comparison_detail, name="comparison"),
    path("console/comparisons/<int:run_id>/progress/", views.comparison_progress, name="comparison-progress"),
    path("console/comparisons/<int:run_id>/cancel/", views.comparison_cancel, name="comparison-cancel"),
    path("console/comparisons/<int:run_id>/resume/", views.comparison_resume, name="comparison-resume"),
    path("console/proofs/<slug:slug>/", views.proof_preview, name="proof"),
    path("console/proofs/<slug:slug>/publish/", views.proof_publish, name="proof-publish"),
    path("console/proofs/<slug:slug>/unpublish/", views.proof_unpublish, name="proof-unpublish"),
    path("console/proofs/<slug:slug>/proof.<str:fmt>", views.proof_export_view, name="proof-export"),
    # Public, no sign-in: published proofs only (404 otherwise).
    path("proof/<slug:slug>/", views.proof_public, name="proof-public"),
    path("proof/<slug:slug>/proof.<str:fmt>", views.proof_public_export, name="proof-public-export"),
]
