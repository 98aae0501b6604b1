"""Error pages: the console's own 403 and 404, JSON on service paths, and a plain 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from fos_console import urls
from tests.routing.test_executor import TRIAGE, classify

pytestmark = pytest.mark.django_db


def test_a_forbidden_console_action_explains_the_roles(client_for: Any, reviewer: Any, install_policy: Any) -> None:
    install_policy(backends={"triage": TRIAGE}, capabilities={"classify-fast": classify(["triage"])})
    response = client_for(reviewer).post("/console/capabilities/classify-fast/contract/", {"latency_budget_ms": "1"})
    assert response.status_code == 403
    content = response.content.decode()
    assert "Not allowed" in content and "Only operators change policy." in content
    assert "Operators change policy and backends" in content


def test_an_unknown_page_answers_a_plain_404_that_links_nowhere(client: Any) -> None:
    response = client.get("/proof/no-such-proof-xx/")
    assert response.status_code == 404
    content = response.content.decode()
    assert "Not found" in content
    assert "/console/" not in content and "<form" not in content


def test_a_forbidden_service_call_answers_json() -> None:
    request = RequestFactory().get("/api/v1/routes/1")
    response = urls.handler403(request, PermissionDenied("no"))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert b'"type": "forbidden"' in response.content


def test_the_500_page_renders_without_a_request_context() -> None:
    request = RequestFactory().get("/console/")
    response = urls.handler500(request)
    assert response.status_code == 500
    assert b"Server error" in response.content
