"""The HTTP adapters against the provider simulator, over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from routing.adapters import adapter_class, close_all, get_adapter
from routing.adapters.base import Adapter, AdapterError, BackendSpec, Completion
from routing.adapters.http import HTTPAdapter, clean_detail, parse_retry_after
from routing.simulator import ProviderSimulator

PROTOCOLS = ["openai", "anthropic", "ollama"]
SECRET = "sk-proj-LEAKCANARY0123456789abcdefXYZ"
MESSAGES = [{"role": "user", "content": "the invoice is wrong"}]


def make_spec(sim: ProviderSimulator, protocol: str, behaviours: str = "", **extra: Any) -> BackendSpec:
    fields: dict[str, Any] = {
        "slug": f"{protocol}-backend",
        "adapter": protocol,
        "locality": "local",
        "base_url": sim.base_url(protocol, behaviours),
        "model": "sim-model",
        "timeout_s": 5.0,
    }
    fields.update(extra)
    return BackendSpec(**fields)


@pytest.fixture
def adapter_for(sim: ProviderSimulator) -> Iterator[Any]:
    """Builds adapters for (protocol, behaviours) and closes them after the test."""
    made: list[Adapter] = []

    def build(protocol: str, behaviours: str = "", **extra: Any) -> Adapter:
        adapter = adapter_class(protocol)(make_spec(sim, protocol, behaviours, **extra))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def complete(adapter: Adapter, *, timeout: float = 2.0, instructions: str = "Answer briefly.") -> Completion:
    return adapter.complete(messages=MESSAGES, instructions=instructions, timeout=timeout)


def failure(adapter: Adapter, **kwargs: Any) -> AdapterError:
    with pytest.raises(AdapterError) as raised:
        complete(adapter, **kwargs)
    return raised.value


def stream_failure(adapter: Adapter, **kwargs: Any) -> tuple[list[Any], AdapterError]:
    received: list[Any] = []
    with pytest.raises(AdapterError) as raised:
        for item in adapter.stream(messages=MESSAGES, instructions="", timeout=kwargs.get("timeout", 2.0)):
            received.append(item)
    return received, raised.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_answers_with_text_and_token_usage(adapter_for: Any, sim: ProviderSimulator, protocol: str) -> None:
    completion = complete(adapter_for(protocol, "answer=urgent"))
    # Four words of input plus two of instructions: the instructions reached the provider.
    assert completion == Completion(text="urgent", tokens_in=6, tokens_out=1)
    assert complete(adapter_for(protocol, "answer=urgent"), instructions="").tokens_in == 4
    assert sim.calls("answer=urgent") == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_takes_usage_from_the_provider(adapter_for: Any, protocol: str) -> None:
    completion = complete(adapter_for(protocol, "echo,tokens_in=120,tokens_out=7"))
    assert completion == Completion(text="the invoice is wrong", tokens_in=120, tokens_out=7)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_sends_the_secret_as_the_provider_expects(
    adapter_for: Any, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("FOS_SIM_KEY", SECRET)
    completion = complete(adapter_for(protocol, f"key={SECRET},answer=billing", secret="env:FOS_SIM_KEY"))
    assert completion.text == "billing"


# --- each error class -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_times_out(adapter_for: Any, protocol: str) -> None:
    started = time.perf_counter()
    error = failure(adapter_for(protocol, "delay=300,answer=late"), timeout=0.1)
    assert error.error_class == "timeout"
    assert "no answer within 0.1 s" in error.detail
    assert time.perf_counter() - started < 0.28


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_reset_connection(adapter_for: Any, protocol: str) -> None:
    assert failure(adapter_for(protocol, "reset")).error_class == "connection"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_closed_port(adapter_for: Any, protocol: str) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}" + ("/v1" if protocol == "openai" else "")
    error = failure(adapter_for(protocol, base_url=base_url))
    assert error.error_class == "connection"
    assert "ConnectError" in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_body_cut_short(adapter_for: Any, protocol: str) -> None:
    assert failure(adapter_for(protocol, "break_after=1")).error_class == "connection"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_rate_limits_and_keeps_retry_after(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "status=429,retry_after=7"))
    assert (error.error_class, error.status, error.retry_after) == ("rate_limited", 429, 7.0)
    assert "HTTP 429" in error.detail


def test_it_reads_retry_after_as_an_http_date(adapter_for: Any) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    error = failure(adapter_for("openai", f"status=429,retry_after={quote(when, safe='')}"))
    assert error.error_class == "rate_limited"
    assert error.retry_after is not None and 25 <= error.retry_after <= 30


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "2.5"}, 2.5), ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5), ({"retry-after": "soon"}, None), ({}, None)],
)
def test_it_parses_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == seconds


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("status", [500, 503])
def test_it_reports_server_errors(adapter_for: Any, protocol: str, status: int) -> None:
    error = failure(adapter_for(protocol, f"status={status}"))
    assert (error.error_class, error.status) == ("server_error", status)
    assert f"HTTP {status}" in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_401_as_auth(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "status=401"))
    assert (error.error_class, error.status) == ("auth", 401)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_wrong_key_as_auth(adapter_for: Any, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("FOS_SIM_KEY", "not-the-right-key")
    error = failure(adapter_for(protocol, "key=the-right-key", secret="env:FOS_SIM_KEY"))
    assert error.error_class == "auth"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_an_unresolvable_secret_as_auth_without_calling(
    adapter_for: Any, sim: ProviderSimulator, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.delenv("FOS_SIM_MISSING", raising=False)
    error = failure(adapter_for(protocol, "answer=x", secret="env:FOS_SIM_MISSING"))
    assert error.error_class == "auth"
    assert "FOS_SIM_MISSING" in error.detail
    assert sim.calls() == 0


def test_it_does_not_repeat_a_key_pasted_where_a_reference_belongs(adapter_for: Any) -> None:
    error = failure(adapter_for("openai", "answer=x", secret=SECRET))
    assert error.error_class == "auth"
    assert SECRET not in str(error) and "LEAKCANARY" not in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_never_lets_the_secret_into_an_error(adapter_for: Any, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("FOS_SIM_KEY", SECRET)
    # The simulator's 401 echoes the key it was given, as OpenAI's does.
    error = failure(adapter_for(protocol, "key=another-key", secret="env:FOS_SIM_KEY"))
    assert error.error_class == "auth"
    assert "[secret]" in error.detail
    for text in (str(error), error.detail, repr(error.args)):
        assert "LEAKCANARY" not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_it_scrubs_escaped_forms_before_cutting_the_detail() -> None:
    secret = "a/b\"c" + "x" * 40
    text = "y" * 280 + secret + " and " + secret.replace("/", "%2F").replace('"', "%22")
    cleaned = clean_detail(text, secret)
    assert "xxxxxxxx" not in cleaned and len(cleaned) <= 300


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_body_that_is_not_json_as_bad_response(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "malformed"))
    assert error.error_class == "bad_response"
    assert "not JSON" in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_missing_fields_as_bad_response(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "wrong_schema"))
    assert error.error_class == "bad_response"
    assert "HTTP 200 without" in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_reports_a_rejected_request_as_bad_response(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "status=400"))
    assert (error.error_class, error.status) == ("bad_response", 400)
    assert "rejected the request: HTTP 400" in error.detail


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_recognises_the_providers_context_length_error(adapter_for: Any, protocol: str) -> None:
    error = failure(adapter_for(protocol, "context_length"))
    assert (error.error_class, error.status) == ("context_length", 400)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_it_recognises_a_refusal(adapter_for: Any, protocol: str) -> None:
    assert failure(adapter_for(protocol, "refuse")).error_class == "content_refused"


def test_it_passes_ollama_refusals_through_as_text(adapter_for: Any) -> None:
    # Ollama has no refusal signal: the model's prose is the answer, left to verification.
    assert "can't help" in complete(adapter_for("ollama", "refuse")).text


@pytest.mark.parametrize(
    ("protocol", "status", "body", "error_class"),
    [
        ("openai", 400, {"error": {"message": "This model's maximum context length is 4096 tokens.", "code": None}}, "context_length"),
        ("openai", 400, {"error": {"message": "too big", "type": "exceed_context_size_error", "code": 400}}, "context_length"),
        ("openai", 400, {"error": {"message": "filtered", "code": "content_filter"}}, "content_refused"),
        ("openai", 400, {"error": {"message": "unsafe", "code": "content_policy_violation"}}, "content_refused"),
        ("openai", 400, {"object": "error", "message": "bad temperature", "code": 400}, "bad_response"),
        ("openai", 403, {"error": {"message": "unsupported region"}}, "auth"),
        ("anthropic", 413, {"type": "error", "error": {"type": "request_too_large", "message": "too large"}}, "context_length"),
        ("anthropic", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "server_error"),
        ("ollama", 500, {"error": "input exceeds the context window"}, "context_length"),
        ("ollama", 404, {"error": "model 'x' not found"}, "bad_response"),
    ],
)
def test_it_classifies_other_shapes_of_provider_errors(
    sim: ProviderSimulator, protocol: str, status: int, body: dict[str, Any], error_class: str
) -> None:
    # Shapes the simulator does not produce (vLLM, llama.cpp, Azure, proxies), as responses.
    adapter = adapter_class(protocol)(make_spec(sim, protocol))
    try:
        assert isinstance(adapter, HTTPAdapter)
        with pytest.raises(AdapterError) as raised:
            adapter._check_status(httpx.Response(status, json=body))
    finally:
        adapter.close()
    assert raised.value.error_class == error_class


# --- streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_streams_deltas_then_one_completion(adapter_for: Any, protocol: str) -> None:
    items = list(adapter_for(protocol, "answer=one two three").stream(messages=MESSAGES, instructions="", timeout=2.0))
    assert items[:-1] == ["one", " two", " three"]
    assert items[-1] == Completion(text="one two three", tokens_in=4, tokens_out=3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_raises_connection_after_the_deltas_when_a_stream_breaks(adapter_for: Any, protocol: str) -> None:
    received, error = stream_failure(adapter_for(protocol, "answer=one two three,break_after=2"))
    assert received == ["one", " two"]
    assert error.error_class == "connection"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("behaviours", "error_class"),
    [
        ("status=503", "server_error"),
        ("status=429,retry_after=2", "rate_limited"),
        ("context_length", "context_length"),
        ("malformed", "bad_response"),
        ("wrong_schema", "bad_response"),
        ("reset", "connection"),
    ],
)
def test_it_raises_stream_failures_before_the_first_delta(
    adapter_for: Any, protocol: str, behaviours: str, error_class: str
) -> None:
    received, error = stream_failure(adapter_for(protocol, behaviours))
    assert received == []
    assert error.error_class == error_class


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_times_out_a_silent_stream(adapter_for: Any, protocol: str) -> None:
    _, error = stream_failure(adapter_for(protocol, "delay=300"), timeout=0.1)
    assert error.error_class == "timeout"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_it_recognises_a_refusal_in_a_stream(adapter_for: Any, protocol: str) -> None:
    _, error = stream_failure(adapter_for(protocol, "refuse"))
    assert error.error_class == "content_refused"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_scrubs_the_secret_from_stream_errors(adapter_for: Any, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("FOS_SIM_KEY", SECRET)
    _, error = stream_failure(adapter_for(protocol, "key=another-key", secret="env:FOS_SIM_KEY"))
    assert error.error_class == "auth"
    assert "LEAKCANARY" not in str(error)


# --- one pooled client per backend ------------------------------------------------------------


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    close_all()
    yield
    close_all()


def test_it_keeps_one_adapter_per_backend_spec(sim: ProviderSimulator, fresh_registry: None) -> None:
    spec = make_spec(sim, "openai", "answer=a")
    first = get_adapter(spec)
    assert get_adapter(spec) is first
    assert get_adapter(make_spec(sim, "openai", "answer=a")) is first  # equal, not identical
    changed = get_adapter(make_spec(sim, "openai", "answer=b"))
    assert changed is not first
    assert get_adapter(make_spec(sim, "openai", "answer=b")) is changed
    assert isinstance(first, HTTPAdapter) and first._client.is_closed


def test_it_reuses_one_connection_for_sequential_calls(sim: ProviderSimulator, fresh_registry: None) -> None:
    spec = make_spec(sim, "ollama", "answer=ok")
    for _ in range(5):
        assert complete(get_adapter(spec)).text == "ok"
    assert sim.connections() == 1


def test_it_lets_a_call_in_flight_finish_when_the_spec_changes(sim: ProviderSimulator, fresh_registry: None) -> None:
    old = get_adapter(make_spec(sim, "anthropic", "delay=200,answer=slow"))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(complete(old)))
    worker.start()
    deadline = time.monotonic() + 2
    while sim.calls("delay=200,answer=slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    replacement = get_adapter(make_spec(sim, "anthropic", "answer=fast"))
    worker.join(timeout=2)
    assert results and results[0].text == "slow"
    assert isinstance(old, HTTPAdapter) and old._client.is_closed
    assert complete(replacement).text == "fast"


def test_it_gives_the_tool_adapter_for_tool_backends(fresh_registry: None) -> None:
    tool_module = pytest.importorskip("routing.adapters.tool")
    spec = BackendSpec(slug="triage", adapter="tool", locality="local", tool="keyword_classifier", config={"labels": {"urgent": ["down"]}})
    assert isinstance(get_adapter(spec), tool_module.ToolAdapter)


def test_it_refuses_an_unknown_protocol(fresh_registry: None) -> None:
    with pytest.raises(AdapterError, match="no adapter for protocol 'carrier-pigeon'"):
        get_adapter(BackendSpec(slug="x", adapter="carrier-pigeon", locality="local"))


def test_it_closes_every_adapter(sim: ProviderSimulator, fresh_registry: None) -> None:
    adapter = get_adapter(make_spec(sim, "openai", "answer=a"))
    close_all()
    assert isinstance(adapter, HTTPAdapter) and adapter._client.is_closed
    assert get_adapter(make_spec(sim, "openai", "answer=a")) is not adapter
