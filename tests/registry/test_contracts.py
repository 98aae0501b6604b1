from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from registry.contracts import validate_base_url, validate_tool_config
from registry.models import Backend


@pytest.mark.parametrize(
    "url",
    ["http://gpu-box:11434", "http://ollama:11434", "http://127.0.0.1:8000/v1", "https://api.openai.com/v1", "http://[::1]:9000"],
)
def test_it_accepts_base_urls_with_any_host_name(url: str) -> None:
    assert validate_base_url(url) == []


@pytest.mark.parametrize(
    "url",
    ["gpu-box:11434", "ftp://host/v1", "http://", "http://user:pw@host/v1", "http://host/v1?key=sk-123", "http://ho st/v1"],
)
def test_it_rejects_base_urls_that_are_not_plain_http(url: str) -> None:
    assert validate_base_url(url)


def test_it_validates_base_url_on_the_model(db: None) -> None:
    backend = Backend(slug="vllm", adapter="openai", locality="local", base_url="http://gpu-box:8000/v1", model="m")
    backend.full_clean()
    backend.base_url = "http://gpu-box:8000/v1?api_key=sk-oops"
    with pytest.raises(ValidationError) as error:
        backend.full_clean()
    assert "base_url" in error.value.message_dict


def test_it_treats_doubled_braces_in_a_template_as_literal() -> None:
    assert validate_tool_config("template", {"template": "{{x}} {input}"}) == []
    assert validate_tool_config("template", {"template": '{{"label": "{first_line}"}}'}) == []
    problems = validate_tool_config("template", {"template": "{x}"})
    assert problems and "{x}" in problems[0]
