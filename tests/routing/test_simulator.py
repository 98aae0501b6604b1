from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from routing.simulator import ProviderSimulator, parse_behaviours

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "the site is down"}]}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # One client for the module: building one costs tens of milliseconds (it loads the CA bundle).
    with httpx.Client(timeout=5) as client:
        yield client


def openai_chat(client: httpx.Client, sim: ProviderSimulator, behaviours: str, **body: object) -> httpx.Response:
    return client.post(sim.base_url("openai", behaviours) + "/chat/completions", json={**CHAT, **body})


def test_it_counts_calls_by_prefix_over_http_and_in_process(sim: ProviderSimulator, client: httpx.Client) -> None:
    openai_chat(client, sim, "answer=urgent")
    openai_chat(client, sim, "answer=urgent")
    openai_chat(client, sim, "status=500")
    answer = client.get(sim.url + "/_sim/calls").json()
    assert answer["total"] == 3
    assert answer["by_prefix"] == {"answer=urgent": 2, "status=500": 1}
    assert sim.calls() == 3
    assert sim.calls("answer=urgent") == 2
    assert sim.calls("status=500") == 1
    assert sim.calls("never-called") == 0


def test_it_counts_prefixes_as_written_in_the_url(sim: ProviderSimulator, client: httpx.Client) -> None:
    assert openai_chat(client, sim, "answer=probably%20billing").json()["choices"][0]["message"]["content"] == "probably billing"
    assert openai_chat(client, sim, "answer=two words").json()["choices"][0]["message"]["content"] == "two words"
    assert sim.calls("answer=probably%20billing") == 1
    assert sim.calls("answer=two words") == 1


def test_it_resets_counters_and_fail_first_over_http(sim: ProviderSimulator, client: httpx.Client) -> None:
    assert openai_chat(client, sim, "fail_first=1").status_code == 500
    assert openai_chat(client, sim, "fail_first=1").status_code == 200
    assert client.post(sim.url + "/_sim/reset").json()["total"] == 0
    assert sim.calls() == 0
    assert openai_chat(client, sim, "fail_first=1").status_code == 500


def test_it_fails_the_first_calls_of_an_exact_prefix_only(sim: ProviderSimulator, client: httpx.Client) -> None:
    statuses = [openai_chat(client, sim, "fail_first=2,answer=ok").status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert openai_chat(client, sim, "fail_first=2,answer=other").status_code == 500
    assert sim.calls("fail_first=2,answer=ok") == 4


def test_it_answers_400_for_an_unknown_behaviour_and_still_counts_the_call(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = openai_chat(client, sim, "answer=urgent,teleport")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "unknown behaviour 'teleport'" in message and "provider simulator" in message
    assert sim.calls("answer=urgent,teleport") == 1


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [("delay=soon", "not a whole number"), ("echo=1", "takes no value"), ("status=200", "400-599"), ("answer", "needs a value")],
)
def test_it_explains_a_bad_behaviour_value(prefix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_behaviours(prefix)


def test_it_answers_400_for_a_body_that_is_not_json(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = client.post(sim.base_url("openai", "echo") + "/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_it_answers_404_naming_the_known_endpoints(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = client.post(sim.url + "/sim/echo/v2/chat")
    assert response.status_code == 404
    assert "POST /v1/chat/completions" in response.json()["error"]["message"]


def test_it_speaks_openai_chat_completions(sim: ProviderSimulator, client: httpx.Client) -> None:
    body = openai_chat(client, sim, "answer=urgent").json()
    assert body["object"] == "chat.completion" and body["model"] == "sim-model"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "urgent", "refusal": None}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
    assert isinstance(body["created"], int) and body["id"].startswith("chatcmpl-")


def test_it_echoes_the_last_user_message_by_default(sim: ProviderSimulator, client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]
    response = client.post(sim.url + "/v1/chat/completions", json={"model": "m", "messages": messages})
    assert response.json()["choices"][0]["message"]["content"] == "second"


def test_it_streams_openai_chunks_with_usage_then_done(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = openai_chat(client, sim, "answer=one two", stream=True, stream_options={"include_usage": True})
    assert response.headers["content-type"] == "text/event-stream"
    data = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "one two"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_it_lists_models(sim: ProviderSimulator, client: httpx.Client) -> None:
    assert client.get(sim.base_url("openai") + "/models").json()["data"][0]["id"] == "sim-model"
    anthropic = client.get(sim.base_url("anthropic") + "/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic["data"][0]["type"] == "model"
    assert client.get(sim.base_url("ollama") + "/api/tags").json()["models"][0]["name"] == "sim-model"


def test_it_speaks_anthropic_messages_and_its_errors(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.base_url("anthropic", "answer=billing") + "/v1/messages"
    body = {"model": "sim-model", "max_tokens": 10, "system": "be brief", "messages": [{"role": "user", "content": "refund please"}]}
    answer = client.post(url, json=body, headers={"anthropic-version": "2023-06-01"}).json()
    assert answer["type"] == "message" and answer["role"] == "assistant" and answer["stop_reason"] == "end_turn"
    assert answer["content"] == [{"type": "text", "text": "billing"}]
    assert answer["usage"] == {"input_tokens": 4, "output_tokens": 1}
    missing_version = client.post(url, json=body)
    assert missing_version.status_code == 400
    assert missing_version.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"},
    }


def test_it_streams_anthropic_events_in_order(sim: ProviderSimulator, client: httpx.Client) -> None:
    url = sim.base_url("anthropic", "answer=a b") + "/v1/messages"
    body = {"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    text = client.post(url, json=body, headers={"anthropic-version": "2023-06-01"}).text
    events = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_it_streams_ollama_ndjson_when_stream_is_absent(sim: ProviderSimulator, client: httpx.Client) -> None:
    response = client.post(sim.base_url("ollama", "answer=a b") + "/api/chat", json=CHAT)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, True]
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 2 and lines[-1]["prompt_eval_count"] == 4
    single = client.post(sim.base_url("ollama", "answer=a b") + "/api/chat", json={**CHAT, "stream": False}).json()
    assert single["message"] == {"role": "assistant", "content": "a b"} and single["done"] is True


def test_it_keeps_a_connection_alive_across_calls(sim: ProviderSimulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        for _ in range(3):
            connection.request("POST", "/sim/answer=x/v1/chat/completions", body=json.dumps(CHAT), headers={"Content-Type": "application/json"})
            assert connection.getresponse().read()
    finally:
        connection.close()
    assert sim.connections() == 1
    assert sim.calls("answer=x") == 3


def test_it_stops_promptly_with_idle_connections_open(client: httpx.Client) -> None:
    simulator = ProviderSimulator().start()
    client.post(simulator.base_url("openai", "echo") + "/chat/completions", json=CHAT)
    started = time.perf_counter()
    simulator.stop()
    assert time.perf_counter() - started < 2
    with pytest.raises(RuntimeError, match="not running"):
        simulator.calls()
