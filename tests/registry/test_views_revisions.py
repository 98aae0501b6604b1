"""The policy revision history: the list and one revision's whole policy with its diff."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from registry.models import Capability, PolicyRevision
from registry.policy import record_revision

pytestmark = pytest.mark.django_db

LIST = "/console/revisions/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def edit(slug: str, author: str, summary: str, **fields: Any) -> PolicyRevision:
    Capability.objects.filter(slug=slug).update(**fields)
    return record_revision(author=author, summary=summary)


@pytest.mark.parametrize("url", [LIST, "/console/revisions/1/"])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, policy: Any, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", [LIST, "/console/revisions/1/"])
def test_it_refuses_the_wrong_method(client_for: Any, operator: Any, policy: Any, url: str) -> None:
    assert client_for(operator).post(url).status_code == 405


@pytest.mark.parametrize("role", ["outsider", "reviewer", "operator"])
def test_it_shows_the_history_to_everyone_signed_in(
    request: pytest.FixtureRequest, client_for: Any, policy: Any, role: str
) -> None:
    edit("classify-fast", "olivia-operator", "classify-fast: latency_budget_ms 2000 -> 1500", latency_budget_ms=1500)
    response = client_for(request.getfixturevalue(role)).get(LIST)
    assert response.status_code == 200
    content = response.content.decode()
    assert content.index("Revision 2") < content.index("Revision 1")  # newest first
    assert "olivia-operator" in content and "classify-fast: latency_budget_ms 2000 -&gt; 1500" in content
    assert '<code>latency_budget_ms</code> <span class="diff-del">2000</span> → <span class="diff-add">1500</span>' in content
    assert '<li class="diff-add">+ backend frontier added' in content  # the first revision, against nothing


def test_it_pages_the_history_by_number(client_for: Any, outsider: Any, policy: Any) -> None:
    for budget in range(1, 25):
        edit("classify-fast", "olivia", f"budget {budget}", latency_budget_ms=budget)
    client = client_for(outsider)
    content = client.get(LIST).content.decode()
    assert "Revision 25" in content and "Revision 6<" in content and "Revision 5<" not in content
    assert 'href="/console/revisions/?before=6"' in content
    older = client.get(LIST + "?before=6", **HTMX)
    page = older.content.decode()
    assert "<html" not in page and page.lstrip().startswith('<section id="revision-list"')
    assert "Revision 5<" in page and "Revision 1<" in page and "Revision 6<" not in page
    assert "?before=" not in page  # nothing older
    assert "latency_budget_ms</code> <span class=\"diff-del\">2000</span> → <span class=\"diff-add\">1</span>" in page  # 2 against 1


def test_it_shows_an_empty_history(client_for: Any, outsider: Any) -> None:
    assert "no revisions yet" in client_for(outsider).get(LIST).content.decode()


def test_it_shows_one_revision_with_its_policy_and_diff(client_for: Any, reviewer: Any, policy: Any) -> None:
    edit("classify-fast", "olivia", "tighter", latency_budget_ms=1500)
    edit("classify-fast", "olivia", "later", latency_budget_ms=1000)
    response = client_for(reviewer).get("/console/revisions/2/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Policy revision 2" in content and "tighter" in content
    assert 'href="/console/revisions/1/"' in content and 'href="/console/revisions/3/"' in content
    assert '<span class="diff-del">2000</span> → <span class="diff-add">1500</span>' in content
    policy_part = content[content.index("<h2>Capabilities</h2>") :]
    assert "<dt>latency_budget_ms</dt><dd><code>1500</code></dd>" in policy_part
    assert "<dt>routes</dt><dd><code>[spark, frontier, triage]</code></dd>" in policy_part
    assert "frontier-large" in policy_part and "env:FRONTIER_API_KEY" in policy_part


def test_it_reads_the_first_revision_against_nothing(client_for: Any, outsider: Any, policy: Any) -> None:
    content = client_for(outsider).get("/console/revisions/1/").content.decode()
    assert "(the first revision)" in content and "current policy" in content
    assert '<li class="diff-add">+ capability classify-fast added' in content


def test_it_answers_htmx_with_the_revision_fragment(client_for: Any, outsider: Any, policy: Any) -> None:
    response = client_for(outsider).get("/console/revisions/1/", **HTMX)
    content = response.content.decode()
    assert "<html" not in content and content.lstrip().startswith('<article id="revision"')


def test_it_answers_404_for_an_unknown_revision(client_for: Any, outsider: Any, policy: Any) -> None:
    assert client_for(outsider).get("/console/revisions/99/").status_code == 404


def test_it_escapes_untrusted_summaries_and_snapshot_values(client_for: Any, outsider: Any, policy: Any) -> None:
    payload = '<script>alert(1)</script><img src=x onerror=alert(2) hx-get="/x">'
    edit("classify-fast", payload, payload, instructions=payload)
    client = client_for(outsider)
    for url in (LIST, "/console/revisions/2/", "/console/capabilities/classify-fast/"):
        content = client.get(url).content.decode()
        assert "<script>alert(1)" not in content and "<img src=x" not in content, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content, url


def test_it_shows_recent_changes_of_the_capability_on_its_page(client_for: Any, outsider: Any, policy: Any) -> None:
    edit("redact-local", "olivia", "redact-local only", latency_budget_ms=5)
    edit("classify-fast", "olivia", "classify-fast faster", latency_budget_ms=1500)
    response = client_for(outsider).get(
        "/console/capabilities/classify-fast/", HTTP_HX_TARGET="recent-revisions", **HTMX
    )
    content = response.content.decode()
    assert content.lstrip().startswith('<section id="recent-revisions"')
    assert 'hx-trigger="policyChanged from:body"' in content
    assert "classify-fast faster" in content and "redact-local only" not in content
    assert 'href="/console/revisions/3/"' in content and 'href="/console/revisions/"' in content
