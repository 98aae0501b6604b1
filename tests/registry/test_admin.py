from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from registry.models import Backend, PolicyRevision
from registry.roles import REVIEWERS, ensure_roles

pytestmark = pytest.mark.django_db

SECRET = "sk-admin-test-7d2e91c0RECOGNISABLE"


@pytest.fixture
def frontier(monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("FOS_ADMIN_TEST_KEY", SECRET)
    return Backend.objects.create(
        slug="frontier",
        adapter="openai",
        base_url="https://api.example.com/v1",
        model="frontier-large",
        locality="hosted",
        secret_ref="env:FOS_ADMIN_TEST_KEY",
    )


def form_data(backend: Backend, **changes: Any) -> dict[str, Any]:
    data = {
        "slug": backend.slug,
        "name": backend.name,
        "adapter": backend.adapter,
        "locality": backend.locality,
        "base_url": backend.base_url,
        "model": backend.model,
        "tool": backend.tool,
        "config": "{}",
        # A field with a callable default carries its initial value in a hidden input, as a browser would send it.
        "initial-config": "{}",
        "secret_ref": backend.secret_ref,
        "cost_in_per_mtok": str(backend.cost_in_per_mtok),
        "cost_out_per_mtok": str(backend.cost_out_per_mtok),
        "timeout_s": str(backend.timeout_s),
        "notes": backend.notes,
    }
    if backend.enabled:
        data["enabled"] = "on"
    data.update(changes)
    return data


def test_it_lists_backends_with_whether_their_secret_resolves(admin_client: Client, frontier: Backend) -> None:
    response = admin_client.get("/admin/registry/backend/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "frontier" in content
    assert 'alt="True"' in content  # the "secret resolves" column
    assert SECRET not in content


def test_it_shows_that_a_reference_resolves_but_never_its_value(admin_client: Client, frontier: Backend) -> None:
    response = admin_client.get(f"/admin/registry/backend/{frontier.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "env:FOS_ADMIN_TEST_KEY" in content
    assert "<div class=\"readonly\">resolves</div>" in content
    assert SECRET not in content


def test_it_shows_why_a_reference_does_not_resolve(
    admin_client: Client, frontier: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOS_ADMIN_TEST_KEY")
    response = admin_client.get(f"/admin/registry/backend/{frontier.pk}/change/")
    assert "does not resolve: environment variable FOS_ADMIN_TEST_KEY is not set" in response.content.decode()


def test_it_records_a_revision_with_the_editor_when_a_backend_is_saved(admin_client: Client, frontier: Backend) -> None:
    response = admin_client.post(f"/admin/registry/backend/{frontier.pk}/change/", form_data(frontier, timeout_s="12"))
    assert response.status_code == 302
    frontier.refresh_from_db()
    assert frontier.timeout_s == 12.0
    revision = PolicyRevision.objects.get()
    assert revision.author == "admin"
    assert revision.summary == "admin: backend frontier changed (timeout_s)"
    assert revision.snapshot["backends"]["frontier"]["timeout_s"] == 12


def test_it_refuses_a_pasted_key_and_records_nothing(admin_client: Client, frontier: Backend) -> None:
    response = admin_client.post(
        f"/admin/registry/backend/{frontier.pk}/change/", form_data(frontier, secret_ref="sk-live-abc123")
    )
    assert response.status_code == 200
    assert "must be env:NAME or file:/absolute/path" in response.content.decode()
    frontier.refresh_from_db()
    assert frontier.secret_ref == "env:FOS_ADMIN_TEST_KEY"
    assert not PolicyRevision.objects.exists()


def test_it_lets_a_reviewer_look_but_not_change(client: Client, frontier: Backend) -> None:
    reviewer = get_user_model().objects.create_user(username="rita", password="pw", is_staff=True)
    reviewer.groups.add(ensure_roles()[REVIEWERS])
    client.force_login(reviewer)
    url = f"/admin/registry/backend/{frontier.pk}/change/"
    assert client.get(url).status_code == 200
    assert client.post(url, form_data(frontier, timeout_s="1")).status_code == 403
    frontier.refresh_from_db()
    assert frontier.timeout_s == 30.0
    assert not PolicyRevision.objects.exists()


def test_it_sends_a_signed_out_visitor_to_sign_in(client: Client, frontier: Backend) -> None:
    response = client.get("/admin/registry/backend/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]
