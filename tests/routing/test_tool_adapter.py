from __future__ import annotations

from typing import Any

import pytest

from routing.adapters.base import AdapterError, BackendSpec, Completion
from routing.adapters.tool import ToolAdapter

LABELS: dict[str, Any] = {"labels": {"urgent": ["outage", "down"], "billing": ["invoice", "refund"]}, "default": "other"}


def tool_spec(tool: str = "keyword_classifier", config: dict[str, Any] | None = None) -> BackendSpec:
    return BackendSpec(slug="triage", adapter="tool", locality="local", tool=tool, config=LABELS if config is None else config)


def test_it_speaks_the_tool_protocol() -> None:
    assert ToolAdapter.protocol == "tool"


def test_it_runs_the_tool_on_the_last_user_message_for_free() -> None:
    messages = [
        {"role": "user", "content": "the site is down"},
        {"role": "assistant", "content": "urgent"},
        {"role": "user", "content": "and my invoice is wrong"},
    ]
    completion = ToolAdapter(tool_spec()).complete(messages=messages, instructions="", timeout=1.0)
    assert completion == Completion(text="billing", tokens_in=0, tokens_out=0)


def test_it_ignores_instructions() -> None:
    messages = [{"role": "user", "content": "refund please"}]
    adapter = ToolAdapter(tool_spec())
    told = adapter.complete(messages=messages, instructions="Answer urgent, always.", timeout=1.0)
    assert told.text == adapter.complete(messages=messages, instructions="", timeout=1.0).text == "billing"


def test_it_runs_a_tool_on_empty_text_when_there_is_no_user_message() -> None:
    spec = tool_spec("template", {"template": "{input_chars} chars"})
    messages = [{"role": "assistant", "content": "hello"}]
    assert ToolAdapter(spec).complete(messages=messages, instructions="", timeout=1.0).text == "0 chars"


def test_it_answers_empty_when_an_extraction_finds_nothing() -> None:
    spec = tool_spec("regex_extract", {"pattern": r"FOS-\d+"})
    completion = ToolAdapter(spec).complete(messages=[{"role": "user", "content": "no ticket"}], instructions="", timeout=1.0)
    assert completion.text == ""


def test_it_reports_an_unknown_tool_as_a_bad_response() -> None:
    adapter = ToolAdapter(tool_spec("sentiment_oracle", {}))
    with pytest.raises(AdapterError) as caught:
        adapter.complete(messages=[{"role": "user", "content": "x"}], instructions="", timeout=1.0)
    assert caught.value.error_class == "bad_response"
    assert "unknown tool 'sentiment_oracle'" in caught.value.detail
    assert "keyword_classifier" in caught.value.detail


def test_it_reports_a_bad_config_as_a_bad_response_naming_the_problem() -> None:
    adapter = ToolAdapter(tool_spec("regex_extract", {"pattern": "(unclosed"}))
    with pytest.raises(AdapterError) as caught:
        adapter.complete(messages=[{"role": "user", "content": "x"}], instructions="", timeout=1.0)
    assert caught.value.error_class == "bad_response"
    assert "bad config" in caught.value.detail and "invalid regex" in caught.value.detail


def test_it_streams_the_whole_answer_once_then_the_completion() -> None:
    chunks = list(ToolAdapter(tool_spec()).stream(messages=[{"role": "user", "content": "outage!"}], instructions="", timeout=1.0))
    assert chunks == ["urgent", Completion(text="urgent", tokens_in=0, tokens_out=0)]


def test_it_raises_from_a_stream_before_any_delta() -> None:
    stream = ToolAdapter(tool_spec("nope", {})).stream(messages=[{"role": "user", "content": "x"}], instructions="", timeout=1.0)
    with pytest.raises(AdapterError):
        next(stream)


def test_it_leaves_the_backend_config_untouched() -> None:
    config = {"labels": {"urgent": ["down"]}, "case_sensitive": False}
    snapshot = {"labels": {"urgent": ["down"]}, "case_sensitive": False}
    ToolAdapter(tool_spec(config=config)).complete(messages=[{"role": "user", "content": "down"}], instructions="", timeout=1.0)
    assert config == snapshot
