"""The official openai SDK, unchanged, against a live server: sync, async, plain and streamed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from routing.callers import create_caller
from routing.models import RouteLog
from tests.routing.test_executor import TRIAGE, classify, http_backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(live_server: Any, sim: Any, install_policy: Any) -> dict[str, str]:
    install_policy(
        backends={
            "llama": http_backend(sim, "ollama", "answer=billing"),
            "down": http_backend(sim, "openai", "status=500"),
            "breaks": http_backend(sim, "openai", "answer=one%20two%20three%20four%20five,break_after=2"),
            "triage": TRIAGE,
        },
        capabilities={
            "classify": classify(["llama", "triage"]),
            "rescue": classify(["down", "triage"]),
            "fragile": {"intent": "generation", "privacy": "hosted_allowed", "routes": ["breaks", "triage"]},
        },
    )
    _, token = create_caller(name="sdk-app")
    return {"base_url": f"{live_server.url}/v1", "api_key": token}


def test_it_works_with_the_sync_client(served: dict[str, str]) -> None:
    client = openai.OpenAI(**served, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="classify", messages=[{"role": "user", "content": "the invoice is wrong"}], temperature=0.2
    )
    completion = raw.parse()
    assert completion.model == "classify"
    assert completion.choices[0].message.content == "billing"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    entry = RouteLog.objects.get(pk=int(raw.headers["x-route-id"]))
    assert (entry.caller, entry.backend) == ("sdk-app", "llama")
    assert 0 < float(raw.headers["x-route-overhead-ms"]) < entry.latency_ms + 1000


def test_it_works_with_the_async_client(served: dict[str, str]) -> None:
    async def ask() -> Any:
        async with openai.AsyncOpenAI(**served, max_retries=0) as client:
            return await client.chat.completions.create(
                model="rescue", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "site down"}]
            )

    completion = asyncio.run(ask())
    assert completion.choices[0].message.content == "urgent"
    assert completion.model == "rescue"


def test_it_streams_with_the_sync_client(served: dict[str, str]) -> None:
    client = openai.OpenAI(**served, max_retries=0)
    stream = client.chat.completions.create(
        model="classify",
        messages=[{"role": "user", "content": "refund"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "billing"
    assert all(c.model == "classify" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_it_streams_with_the_async_client_after_a_fallback(served: dict[str, str]) -> None:
    async def ask() -> str:
        async with openai.AsyncOpenAI(**served, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="rescue", messages=[{"role": "user", "content": "outage"}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(ask()) == "urgent"
    entry = RouteLog.objects.latest("id")
    assert (entry.outcome, entry.backend, entry.error_class) == ("fallback", "triage", "")


def test_it_ends_a_stream_that_breaks_midway_with_an_error_and_logs_it(served: dict[str, str]) -> None:
    client = openai.OpenAI(**served, max_retries=0)
    stream = client.chat.completions.create(model="fragile", messages=[{"role": "user", "content": "x"}], stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)  # some tokens arrived before the break
    entry = RouteLog.objects.latest("id")
    assert entry.outcome == "failed"
    assert entry.error_class == "connection"
    assert [a.backend for a in entry.attempts.all()] == ["breaks"]
    assert any("no fallback once the first token is sent" in r for r in entry.reasons)


def test_it_lists_the_capabilities_the_caller_may_use(served: dict[str, str], live_server: Any) -> None:
    client = openai.OpenAI(**served, max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["classify", "fragile", "rescue"]
    _, narrow = create_caller(name="narrow", capabilities=["classify"])
    narrow_client = openai.OpenAI(base_url=served["base_url"], api_key=narrow, max_retries=0)
    assert [m.id for m in narrow_client.models.list()] == ["classify"]


def test_it_raises_the_sdk_errors_for_our_error_answers(served: dict[str, str]) -> None:
    client = openai.OpenAI(**served, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.chat.completions.create(model="classify", messages=[{"role": "user", "content": "x"}], logit_bias={"1": 2})
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(
            model="classify",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["base_url"], api_key="wrong", max_retries=0).models.list()


def test_it_answers_json_for_a_stream_that_cannot_start(served: dict[str, str], live_server: Any) -> None:
    response = httpx.post(
        f"{served['base_url']}/chat/completions",
        headers={"Authorization": f"Bearer {served['api_key']}"},
        json={"model": "fragile", "messages": [{"role": "assistant", "content": "no user message"}], "stream": True},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "messages must include at least one user message"


def test_it_sends_server_sent_events_ending_in_done(served: dict[str, str]) -> None:
    with httpx.stream(
        "POST",
        f"{served['base_url']}/chat/completions",
        headers={"Authorization": f"Bearer {served['api_key']}"},
        json={"model": "classify", "messages": [{"role": "user", "content": "refund"}], "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
