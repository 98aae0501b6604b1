"""The capability pages: list, detail, and editing the contract in place."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from registry.models import Capability, PolicyRevision, Route
from tests.registry.conftest import contract_data

pytestmark = pytest.mark.django_db

LIST = "/console/capabilities/"
DETAIL = "/console/capabilities/classify-fast/"
EDIT = "/console/capabilities/classify-fast/contract/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def fragment_of(response: Any) -> str:
    content = response.content.decode()
    assert "<html" not in content, "expected a fragment, got a whole page"
    return content


def revisions() -> int:
    return PolicyRevision.objects.count()


# Access


@pytest.mark.parametrize("url", [LIST, DETAIL])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, policy: Any, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_it_sends_an_anonymous_edit_to_sign_in_and_saves_nothing(client: Client, classify: Capability) -> None:
    before = revisions()
    response = client.post(EDIT, contract_data(classify, latency_budget_ms="1500"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert revisions() == before


@pytest.mark.parametrize("role", ["outsider", "reviewer"])
def test_it_shows_the_contract_to_lookers_without_edit_controls(
    request: pytest.FixtureRequest, client_for: Any, classify: Capability, role: str
) -> None:
    response = client_for(request.getfixturevalue(role)).get(DETAIL)
    assert response.status_code == 200
    content = response.content.decode()
    assert "2000 ms" in content and "Label the message." in content
    assert "<code>one_of</code>: <code>urgent, billing, other</code>" in content
    assert EDIT not in content
    assert "/move/" not in content and "/toggle/" not in content
    assert 'name="latency_budget_ms"' not in content
    assert "/try/" not in content  # try-it is for operators only


@pytest.mark.parametrize("role", ["outsider", "reviewer"])
def test_it_forbids_lookers_to_edit_the_contract(
    request: pytest.FixtureRequest, client_for: Any, classify: Capability, role: str
) -> None:
    before = revisions()
    response = client_for(request.getfixturevalue(role)).post(EDIT, contract_data(classify, latency_budget_ms="1500"))
    assert response.status_code == 403
    classify.refresh_from_db()
    assert classify.latency_budget_ms == 2000
    assert revisions() == before


def test_it_answers_404_for_an_unknown_capability(client_for: Any, operator: Any, policy: Any) -> None:
    client = client_for(operator)
    assert client.get("/console/capabilities/nope/").status_code == 404
    assert client.post("/console/capabilities/nope/contract/", {}).status_code == 404


@pytest.mark.parametrize(("method", "url"), [("post", LIST), ("post", DETAIL), ("get", EDIT), ("put", EDIT)])
def test_it_refuses_the_wrong_method(client_for: Any, operator: Any, policy: Any, method: str, url: str) -> None:
    assert getattr(client_for(operator), method)(url).status_code == 405


# The list


def test_it_lists_capabilities_with_their_contract_and_routes_in_order(client_for: Any, outsider: Any, policy: Any) -> None:
    content = client_for(outsider).get(LIST).content.decode()
    assert "<html" in content
    for text in ("classify-fast", "redact-local", "classification", "local only", "hosted allowed", "2000 ms", "$0.001", "next route"):
        assert text in content
    chain = content[content.index("classify-fast") : content.index("redact-local")]
    assert chain.index("spark") < chain.index("frontier") < chain.index("triage")
    assert 'class="badge warn"' in chain and ">hosted<" in chain


def test_it_shows_an_empty_state_without_capabilities(client_for: Any, outsider: Any) -> None:
    content = client_for(outsider).get(LIST).content.decode()
    assert "no capabilities yet: import a policy (<code>manage.py import_policy FILE</code>) or add one in the admin" in content


def test_it_answers_htmx_with_the_table_fragment(client_for: Any, outsider: Any, policy: Any) -> None:
    content = fragment_of(client_for(outsider).get(LIST, **HTMX))
    assert content.lstrip().startswith('<section id="capability-table"')


# The detail page


def test_it_shows_the_operator_the_edit_form_dry_run_and_try_it(client_for: Any, operator: Any, classify: Capability) -> None:
    content = client_for(operator).get(DETAIL).content.decode()
    assert "<html" in content
    assert f'action="{EDIT}"' in content and f'hx-post="{EDIT}"' in content
    assert 'name="latency_budget_ms" value="2000"' in content
    assert 'value="0.001"' in content
    assert "urgent\nbilling\nother" in content
    for name in ("timeout", "verification_failed", "budget"):
        assert f'value="{name}"' in content
    assert '<section id="dry-run-result"></section>' in content
    assert '<section id="try-it-result"></section>' in content


def test_it_points_the_dry_run_and_try_it_boxes_at_the_routing_endpoints(
    client_for: Any, operator: Any, outsider: Any, classify: Capability
) -> None:
    from django.urls import NoReverseMatch, reverse

    try:
        dry_run = reverse("routing:dry-run", kwargs={"slug": "classify-fast"})
        try_it = reverse("routing:try-it", kwargs={"slug": "classify-fast"})
    except NoReverseMatch:
        pytest.skip("routing:dry-run and routing:try-it are not there yet")
    content = client_for(operator).get(DETAIL).content.decode()
    assert f'hx-post="{dry_run}" hx-target="#dry-run-result" hx-swap="outerHTML"' in content
    assert f'hx-post="{try_it}" hx-target="#try-it-result" hx-swap="outerHTML"' in content
    assert 'name="input"' in content
    looker = client_for(outsider).get(DETAIL).content.decode()
    assert f'hx-post="{dry_run}"' in looker and try_it not in looker


@pytest.mark.parametrize("target", ["contract", "routes", "recent-revisions"])
def test_it_answers_htmx_with_the_region_it_targets(client_for: Any, operator: Any, classify: Capability, target: str) -> None:
    content = fragment_of(client_for(operator).get(DETAIL, HTTP_HX_TARGET=target, **HTMX))
    assert content.lstrip().startswith(f'<section id="{target}"')


def test_it_answers_htmx_without_a_known_target_with_the_page(client_for: Any, operator: Any, classify: Capability) -> None:
    assert "<html" in client_for(operator).get(DETAIL, **HTMX).content.decode()


def test_it_escapes_untrusted_instructions(client_for: Any, outsider: Any, classify: Capability) -> None:
    classify.instructions = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    classify.save(update_fields=["instructions"])
    content = client_for(outsider).get(DETAIL).content.decode()
    assert "<script>alert(1)" not in content and "<img src=x" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


# Editing the contract


def test_it_saves_a_contract_edit_with_one_revision_naming_the_change(
    client_for: Any, operator: Any, classify: Capability
) -> None:
    before = revisions()
    data = contract_data(
        classify, latency_budget_ms="1500", fallback_on=[*classify.fallback_on, "verification_failed"]
    )
    response = client_for(operator).post(EDIT, data)
    assert response.status_code == 302
    assert response["Location"] == DETAIL + "#contract"
    classify.refresh_from_db()
    assert classify.latency_budget_ms == 1500
    assert "verification_failed" in classify.fallback_on
    assert revisions() == before + 1
    revision = PolicyRevision.objects.order_by("-number").first()
    assert revision.author == operator.get_username()
    assert revision.summary == "classify-fast: latency_budget_ms 2000 -> 1500; fallback_on + verification_failed"
    assert revision.snapshot["capabilities"]["classify-fast"]["latency_budget_ms"] == 1500


def test_it_answers_an_htmx_edit_with_the_saved_contract_and_a_policy_event(
    client_for: Any, operator: Any, classify: Capability
) -> None:
    # A hosted route would keep privacy from tightening (see the validation tests): retire it first.
    Route.objects.filter(capability=classify, backend__slug="frontier").update(status=Route.Status.RETIRED)
    response = client_for(operator).post(EDIT, contract_data(classify, privacy="local_only", verify="non_empty"), **HTMX)
    content = fragment_of(response)
    assert response.status_code == 200
    assert content.lstrip().startswith('<section id="contract"')
    assert "privacy hosted_allowed -&gt; local_only" in content
    assert "-&gt; {&quot;kind&quot;: &quot;non_empty&quot;}" in content  # the verify change, escaped
    assert response["HX-Trigger"] == '{"policyChanged": {}}'
    classify.refresh_from_db()
    assert (classify.privacy, classify.verify) == ("local_only", {"kind": "non_empty"})


@pytest.mark.parametrize(
    ("kind", "field", "changes"),
    [
        ("regex", "verify_pattern", {"verify_pattern": "(unclosed"}),
        ("json_schema", "verify_schema", {"verify_schema": '{"type": "nope"}'}),
        ("json_schema", "verify_schema", {"verify_schema": "{not json"}),
        ("one_of", "verify_values", {"verify_values": " , "}),
        ("max_chars", "verify_limit", {"verify_limit": "0"}),
    ],
)
def test_it_shows_a_bad_verification_rule_beside_its_parameter_and_saves_nothing(
    client_for: Any, operator: Any, classify: Capability, kind: str, field: str, changes: dict[str, str]
) -> None:
    before = revisions()
    response = client_for(operator).post(EDIT, contract_data(classify, verify=kind, **changes), **HTMX)
    assert response.status_code == 200
    content = fragment_of(response)
    block = content[content.index(f'id="field-id_{field}"') :]
    block = block[: block.index("</div>\n")]
    assert 'class="errorlist"' in block, block
    assert revisions() == before
    classify.refresh_from_db()
    assert classify.verify == {"kind": "one_of", "values": ["urgent", "billing", "other"]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_cost_usd", "-0.01", "greater than or equal to 0"),
        ("latency_budget_ms", "0", "greater than or equal to 1"),
        ("fallback_on", ["timeout", "bogus"], "bogus is not one of the available choices"),
        ("privacy", "local_only", "cannot be local_only while routes go to hosted backends (frontier)"),
    ],
)
def test_it_shows_a_bad_value_beside_its_field_and_saves_nothing(
    client_for: Any, operator: Any, classify: Capability, field: str, value: Any, message: str
) -> None:
    before = revisions()
    response = client_for(operator).post(EDIT, contract_data(classify, **{field: value}), **HTMX)
    assert response.status_code == 200
    content = fragment_of(response)
    block = content[content.index(f'id="field-id_{field}"') :]
    block = block[: block.index('class="errorlist"') + 400]
    assert message in block
    assert revisions() == before
    classify.refresh_from_db()
    assert (classify.privacy, classify.max_cost_usd, classify.latency_budget_ms) == ("hosted_allowed", Decimal("0.001"), 2000)


def test_it_re_renders_a_plain_post_with_errors_as_a_400_page(client_for: Any, operator: Any, classify: Capability) -> None:
    response = client_for(operator).post(EDIT, contract_data(classify, verify="regex", verify_pattern="[a-"))
    assert response.status_code == 400
    content = response.content.decode()
    assert "<html" in content and "invalid regex" in content
    assert 'value="[a-"' in content  # the operator's input is kept for correction


def test_it_saves_each_verification_kind(client_for: Any, operator: Any, classify: Capability) -> None:
    client = client_for(operator)
    cases = [
        ({"verify": "regex", "verify_pattern": r"\d{3}"}, {"kind": "regex", "pattern": r"\d{3}"}),
        (
            {"verify": "json_schema", "verify_schema": '{"type": "object", "required": ["id"]}'},
            {"kind": "json_schema", "schema": {"type": "object", "required": ["id"]}},
        ),
        ({"verify": "max_chars", "verify_limit": "280"}, {"kind": "max_chars", "limit": 280}),
        ({"verify": "one_of", "verify_values": "yes, no"}, {"kind": "one_of", "values": ["yes", "no"]}),
    ]
    for changes, rule in cases:
        assert client.post(EDIT, contract_data(classify, **changes)).status_code == 302
        classify.refresh_from_db()
        assert classify.verify == rule
    assert PolicyRevision.objects.filter(author=operator.get_username()).count() == len(cases)


def test_it_records_no_revision_when_nothing_changed(client_for: Any, operator: Any, classify: Capability) -> None:
    before = revisions()
    response = client_for(operator).post(EDIT, contract_data(classify), **HTMX)
    assert "No changes to save." in fragment_of(response)
    assert "HX-Trigger" not in response
    assert revisions() == before


def test_it_summarises_instructions_without_quoting_them(client_for: Any, operator: Any, classify: Capability) -> None:
    client_for(operator).post(EDIT, contract_data(classify, instructions="Secret sauce", instructions_private="on"))
    summary = PolicyRevision.objects.order_by("-number").first().summary
    assert summary == "classify-fast: instructions edited; instructions_private false -> true"
