from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from registry.models import Backend, Capability, Route

pytestmark = pytest.mark.django_db


def backend(**fields: Any) -> Backend:
    values: dict[str, Any] = {
        "slug": "spark-llama",
        "adapter": "ollama",
        "base_url": "http://127.0.0.1:11434",
        "model": "llama3.1:8b",
        "locality": "local",
    }
    values.update(fields)
    return Backend(**values)


def tool(tool_name: str, config: Any) -> Backend:
    return backend(slug="tool", adapter="tool", base_url="", model="", tool=tool_name, config=config)


def capability(**fields: Any) -> Capability:
    values: dict[str, Any] = {"slug": "classify-fast", "intent": "classification", "privacy": "hosted_allowed"}
    values.update(fields)
    return Capability(**values)


def errors(obj: Backend | Capability | Route) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        obj.full_clean()
    return excinfo.value.message_dict


def only(problems: dict[str, list[str]], field: str) -> str:
    """The one field with problems, and its problems as one string."""
    assert list(problems) == [field]
    return " ".join(problems[field])


def test_it_accepts_a_complete_backend_and_capability() -> None:
    backend(secret_ref="env:OLLAMA_TOKEN", cost_in_per_mtok=Decimal("0.5"), timeout_s=0.5).full_clean()
    tool("keyword_classifier", {"labels": {"urgent": ["down"]}, "default": "other"}).full_clean()
    capability(
        max_cost_usd=Decimal("0"),
        verify={"kind": "json_schema", "schema": {"type": "object", "required": ["id"]}},
        fallback_on=["timeout", "verification_failed"],
    ).full_clean()


@pytest.mark.parametrize("field", ["base_url", "model"])
def test_it_requires_base_url_and_model_for_http_adapters(field: str) -> None:
    assert only(errors(backend(**{field: ""})), field) == "required for the ollama adapter"


def test_it_requires_a_tool_name_for_tool_backends() -> None:
    assert only(errors(tool("", {})), "tool") == "required for tool backends"


@pytest.mark.parametrize("ref", ["sk-live-abc123", "env:", "file:relative/key.txt", "env:1NUMBER", "ENV:KEY"])
def test_it_rejects_what_is_not_a_secret_reference(ref: str) -> None:
    message = only(errors(backend(secret_ref=ref)), "secret_ref")
    assert "must be env:NAME or file:/absolute/path" in message


def test_it_does_not_repeat_a_pasted_key_in_the_error() -> None:
    assert "sk-live-abc123" not in only(errors(backend(secret_ref="sk-live-abc123")), "secret_ref")


@pytest.mark.parametrize("ref", ["", "env:OPENAI_API_KEY", "file:/run/secrets/openai"])
def test_it_accepts_secret_references(ref: str) -> None:
    backend(secret_ref=ref).full_clean()


def test_it_rejects_an_unknown_tool() -> None:
    message = only(errors(tool("sentiment_oracle", {})), "tool")
    assert "unknown tool 'sentiment_oracle'" in message
    assert "keyword_classifier" in message


@pytest.mark.parametrize(
    ("tool_name", "config", "reason"),
    [
        ("keyword_classifier", {}, "keyword_classifier config needs 'labels'"),
        ("keyword_classifier", {"labels": {"urgent": []}}, "labels.urgent must be a non-empty list of keywords"),
        ("keyword_classifier", {"labels": {"a": ["x"]}, "colour": "red"}, "takes no key 'colour'"),
        ("keyword_classifier", {"labels": {"a": ["x"]}, "case_sensitive": "yes"}, "case_sensitive must be true or false"),
        ("regex_extract", {"pattern": "("}, "invalid regex"),
        ("regex_extract", {"pattern": r"ORD-(\d+)", "group": 2}, "group 2 does not exist"),
        ("template", {"template": "Hello {name}"}, "template field {name} is unknown"),
        ("template", ["not", "a", "table"], "config must be a table"),
    ],
)
def test_it_rejects_bad_tool_config(tool_name: str, config: Any, reason: str) -> None:
    assert reason in only(errors(tool(tool_name, config)), "config")


@pytest.mark.parametrize("field", ["cost_in_per_mtok", "cost_out_per_mtok"])
def test_it_rejects_negative_costs(field: str) -> None:
    assert only(errors(backend(**{field: Decimal("-0.01")})), field) == "must not be negative"


@pytest.mark.parametrize("timeout", [0, -1.5])
def test_it_rejects_a_timeout_of_zero_or_less(timeout: float) -> None:
    assert only(errors(backend(timeout_s=timeout)), "timeout_s") == "must be more than 0 seconds"


def test_it_rejects_a_negative_max_cost() -> None:
    assert "greater than or equal to 0" in only(errors(capability(max_cost_usd=Decimal("-0.001"))), "max_cost_usd")


def test_it_rejects_a_latency_budget_below_one_millisecond() -> None:
    assert "greater than or equal to 1" in only(errors(capability(latency_budget_ms=0)), "latency_budget_ms")


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"kind": "regex", "pattern": "ORD-(\\d+"}, "invalid regex"),
        ({"kind": "json_schema", "schema": {"type": 12}}, "invalid JSON schema"),
        ({"kind": "json_schema", "schema": "object"}, "schema must be a table"),
        ({"kind": "sentiment"}, "unknown verification kind 'sentiment'"),
        ({"values": ["a"]}, "unknown verification kind None"),
        ({"kind": "one_of", "values": []}, "one_of values must be a non-empty list of strings"),
        ({"kind": "one_of"}, "one_of needs 'values'"),
        ({"kind": "non_empty", "limit": 3}, "non_empty takes no key 'limit'"),
        ({"kind": "max_chars", "limit": 0}, "limit must be a whole number of at least 1"),
        ("non_empty", "must be a table with a kind"),
    ],
)
def test_it_rejects_bad_verification_rules(rule: Any, reason: str) -> None:
    assert reason in only(errors(capability(verify=rule)), "verify")


@pytest.mark.parametrize(
    ("fallback_on", "reason"),
    [
        (["timeout", "tired"], "unknown error class 'tired'"),
        (["timeout", "timeout"], "lists an error class twice"),
        ("timeout", "must be a list of error classes"),
    ],
)
def test_it_rejects_bad_fallback_classes(fallback_on: Any, reason: str) -> None:
    assert reason in only(errors(capability(fallback_on=fallback_on)), "fallback_on")


@pytest.fixture
def hosted() -> Backend:
    return Backend.objects.create(
        slug="frontier",
        adapter="openai",
        base_url="https://api.example.com/v1",
        model="frontier-large",
        locality="hosted",
    )


@pytest.fixture
def local() -> Backend:
    return Backend.objects.create(
        slug="spark-llama", adapter="ollama", base_url="http://127.0.0.1:11434", model="llama3.1:8b", locality="local"
    )


def test_it_rejects_a_route_from_a_local_only_capability_to_a_hosted_backend(hosted: Backend) -> None:
    private = Capability.objects.create(slug="private-summary", intent="generation", privacy="local_only")
    route = Route(capability=private, backend=hosted, status=Route.Status.PROPOSED)
    assert only(errors(route), "backend") == "frontier is hosted and private-summary is local_only"
    # A rejected proposal never serves, so it may stay on record.
    Route(capability=private, backend=hosted, status=Route.Status.REJECTED).full_clean()


def test_it_rejects_making_a_capability_local_only_while_it_routes_to_a_hosted_backend(hosted: Backend) -> None:
    cap = Capability.objects.create(slug="classify-fast", intent="classification", privacy="hosted_allowed")
    Route.objects.create(capability=cap, backend=hosted, status=Route.Status.ACTIVE)
    cap.privacy = Capability.Privacy.LOCAL_ONLY
    message = only(errors(cap), "privacy")
    assert message == "cannot be local_only while routes go to hosted backends (frontier)"

    cap.routes.update(status=Route.Status.RETIRED)
    cap.full_clean()


def test_it_rejects_making_a_backend_hosted_while_a_local_only_capability_routes_to_it(local: Backend) -> None:
    private = Capability.objects.create(slug="private-summary", intent="generation", privacy="local_only")
    Route.objects.create(capability=private, backend=local, status=Route.Status.APPROVED)
    local.locality = Backend.Locality.HOSTED
    message = only(errors(local), "locality")
    assert message == "cannot be hosted: local_only capabilities route to this backend (private-summary)"

    private.routes.update(status=Route.Status.RETIRED)
    local.full_clean()
