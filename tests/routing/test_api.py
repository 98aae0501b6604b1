from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from routing.callers import create_caller, hash_token
from routing.models import Caller, IdempotencyRecord, RouteLog
from tests.routing.test_executor import TRIAGE, classify, http_backend

ROUTE = "/api/v1/route/classify"


@pytest.fixture
def policy(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=billing"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"]), "broken": classify([])},
    )


@pytest.fixture
def token(db: None) -> str:
    return create_caller(name="billing-app")[1]


def post(client: Client, path: str, body: Any, token: str | None, **headers: str) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(path, data=data, content_type="application/json", headers=headers)


def assert_error(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def test_it_routes_a_call_and_answers_the_contract_shape(client: Client, policy: None, token: str) -> None:
    response = post(client, ROUTE, {"input": "the invoice is wrong", "metadata": {"order": 7}}, token)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"route_id", "output", "outcome", "verification"}
    assert (body["output"], body["outcome"]) == ("billing", "primary")
    assert body["verification"]["passed"] is True
    entry = RouteLog.objects.get(pk=body["route_id"])
    assert entry.caller == "billing-app" and entry.metadata == {"order": 7}
    assert response["X-Route-Id"] == str(entry.pk)


def test_it_reports_its_own_overhead_apart_from_the_providers_time(
    client: Client, sim: Any, install_policy: Any, token: str
) -> None:
    install_policy(
        backends={"slow": http_backend(sim, "ollama", "delay=250,answer=billing")},
        capabilities={"classify": classify(["slow"])},
    )
    started = time.perf_counter()
    response = post(client, ROUTE, {"input": "the invoice is wrong"}, token)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200 and elapsed_ms >= 250
    overhead_ms = float(response["X-Route-Overhead-Ms"])
    # The provider's 250 ms are not counted; what is left is the request's own work.
    assert 0 < overhead_ms < elapsed_ms - 200


def test_it_accepts_messages(client: Client, policy: None, token: str) -> None:
    response = post(client, ROUTE, {"messages": [{"role": "user", "content": "refund"}]}, token)
    assert response.status_code == 200 and response.json()["output"] == "billing"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"a string"', "must be a JSON object"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        ({"input": 5}, "input must be a string"),
        ({"input": ""}, "must not be empty"),
        ({"messages": []}, "non-empty list"),
        ({"messages": "hi"}, "non-empty list"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role must be one of"),
        ({"messages": [{"role": "user", "content": 3}]}, "content must be a string"),
        ({"input": "x", "messages": [{"role": "user", "content": "x"}]}, "exactly one of"),
        ({}, "exactly one of"),
        ({"input": "x", "metadata": [1]}, "metadata must be an object"),
        ({"input": "x", "temperature": 1}, "unknown field"),
    ],
)
def test_it_answers_400_json_for_bad_bodies(client: Client, policy: None, token: str, body: Any, fragment: str) -> None:
    body = assert_error(post(client, ROUTE, body, token), 400, "invalid_request")
    assert fragment in body["error"]["message"]
    assert RouteLog.objects.count() == 0


def test_it_answers_401_without_or_with_a_bad_token(client: Client, policy: None, token: str) -> None:
    assert_error(post(client, ROUTE, {"input": "x"}, None), 401, "unauthorized")
    assert_error(post(client, ROUTE, {"input": "x"}, "fos_not-a-token"), 401, "unauthorized")
    response = client.post(ROUTE, data="{}", content_type="application/json", headers={"Authorization": f"Basic {token}"})
    assert_error(response, 401, "unauthorized")


def test_it_refuses_a_revoked_token_at_once(client: Client, policy: None, token: str) -> None:
    assert post(client, ROUTE, {"input": "x"}, token).status_code == 200
    Caller.objects.filter(name="billing-app").update(revoked_at=timezone.now())
    assert_error(post(client, ROUTE, {"input": "x"}, token), 401, "unauthorized")


def test_it_answers_403_for_a_capability_the_caller_may_not_use(client: Client, policy: None) -> None:
    _, token = create_caller(name="narrow", capabilities=["other"])
    assert_error(post(client, ROUTE, {"input": "x"}, token), 403, "forbidden")


def test_it_answers_404_for_an_unknown_capability_or_path(client: Client, policy: None, token: str) -> None:
    assert_error(post(client, "/api/v1/route/nope", {"input": "x"}, token), 404, "not_found")
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert RouteLog.objects.count() == 0


def test_it_answers_405_for_a_wrong_method(client: Client, policy: None, token: str) -> None:
    response = client.get(ROUTE, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert_error(client.post("/api/v1/routes/1"), 405, "method_not_allowed")


def test_it_answers_413_before_calling_a_provider(client: Client, sim: Any, policy: None, token: str, settings: Any) -> None:
    settings.FOS_MAX_REQUEST_BYTES = 2048
    body = assert_error(post(client, ROUTE, {"input": "x" * 5000}, token), 413, "payload_too_large")
    assert "2048" in body["error"]["message"]
    assert sim.calls() == 0 and RouteLog.objects.count() == 0


def test_it_answers_503_with_the_route_id_when_no_route_succeeds(client: Client, policy: None, token: str) -> None:
    body = assert_error(post(client, "/api/v1/route/broken", {"input": "x"}, token), 503, "route_failed")
    entry = RouteLog.objects.get(pk=body["route_id"])
    assert entry.outcome == "failed"


def test_it_replays_an_idempotent_request_without_calling_the_provider(
    client: Client, sim: Any, policy: None, token: str
) -> None:
    first = post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "k-1"})
    second = post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert sim.calls("answer=billing") == 1
    assert RouteLog.objects.count() == 1


def test_it_answers_422_for_a_key_reused_with_another_body(client: Client, policy: None, token: str) -> None:
    post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "k-2"})
    assert_error(post(client, ROUTE, {"input": "other"}, token, **{"Idempotency-Key": "k-2"}), 422, "idempotency_mismatch")


def test_it_answers_409_while_the_first_request_runs(client: Client, policy: None, token: str) -> None:
    caller = Caller.objects.get(name="billing-app")
    from routing.idempotency import claim, request_hash

    body = json.dumps({"input": "refund"}).encode()
    running = claim(caller=caller, key="k-3", request_sha256=request_hash(path=ROUTE, body=body))
    assert running.record is not None
    assert_error(post(client, ROUTE, body, token, **{"Idempotency-Key": "k-3"}), 409, "idempotency_in_progress")


def test_it_scopes_keys_per_caller_and_expires_them(client: Client, sim: Any, policy: None, token: str) -> None:
    _, other = create_caller(name="other-app")
    post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "shared"})
    post(client, ROUTE, {"input": "refund"}, other, **{"Idempotency-Key": "shared"})
    assert sim.calls("answer=billing") == 2
    IdempotencyRecord.objects.update(expires_at=timezone.now())
    post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "shared"})
    assert sim.calls("answer=billing") == 3


def test_it_frees_the_key_when_the_request_was_invalid(client: Client, policy: None, token: str) -> None:
    assert_error(post(client, ROUTE, {"input": 3}, token, **{"Idempotency-Key": "k-4"}), 400, "invalid_request")
    assert post(client, ROUTE, {"input": "refund"}, token, **{"Idempotency-Key": "k-4"}).status_code == 200


def test_it_rate_limits_per_caller_and_logs_the_rejection(client: Client, sim: Any, policy: None) -> None:
    _, token = create_caller(name="limited", rate_limit_per_minute=2)
    assert post(client, ROUTE, {"input": "refund"}, token).status_code == 200
    assert post(client, ROUTE, {"input": "refund"}, token).status_code == 200
    response = post(client, ROUTE, {"input": "refund"}, token)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    rejected = RouteLog.objects.get(pk=int(response["X-Route-Id"]))
    assert (rejected.outcome, rejected.caller, rejected.attempts.count()) == ("rejected", "limited", 0)
    assert sim.calls("answer=billing") == 2


def test_it_serves_a_route_log_to_its_caller_and_console_users_only(client: Client, policy: None, token: str) -> None:
    route_id = post(client, ROUTE, {"input": "refund"}, token).json()["route_id"]
    response = client.get(f"/api/v1/routes/{route_id}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    expected = {
        "route_id", "capability", "intent", "privacy", "policy_revision", "outcome", "backend", "fallback_eligible",
        "fallback_used", "reasons", "attempts", "verification", "input_sha256", "input_chars", "latency_ms",
        "cost_usd", "created_at",
    }
    assert set(body) == expected
    assert body["attempts"][0]["backend"] == "llama"
    assert set(body["attempts"][0]) == {
        "backend", "locality", "status", "error_class", "latency_ms", "cost_usd", "tokens_in", "tokens_out"
    }
    _, stranger = create_caller(name="stranger")
    assert_error(client.get(f"/api/v1/routes/{route_id}", headers={"Authorization": f"Bearer {stranger}"}), 404, "not_found")
    assert_error(client.get(f"/api/v1/routes/{route_id}"), 401, "unauthorized")
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests")
    client.force_login(user)
    assert client.get(f"/api/v1/routes/{route_id}").status_code == 200


def test_it_answers_health_and_readiness(client: Client, db: None) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok"}


def test_it_creates_a_caller_printing_only_the_token(db: None, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("create_caller", "reporting")
    token = capsys.readouterr().out.strip()
    assert token.startswith("fos_") and "\n" not in token
    caller = Caller.objects.get(name="reporting")
    assert caller.token_sha256 == hash_token(token)
    assert token not in json.dumps(list(Caller.objects.values()), default=str)


def test_it_answers_503_when_the_cache_is_unreachable(client: Client, db: None, settings: Any) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"].startswith("unavailable")


def test_it_answers_json_from_the_error_handlers_on_api_paths(rf: Any) -> None:
    from fos_console.urls import handler400, handler500

    for handler, status in ((lambda r: handler500(r), 500), (lambda r: handler400(r, ValueError()), 400)):
        response = handler(rf.post("/api/v1/route/classify"))
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content)["error"]["type"] in {"internal_error", "invalid_request"}


def test_it_revokes_a_caller_from_the_admin(client: Client, policy: None, token: str, admin_user: Any) -> None:
    assert post(client, ROUTE, {"input": "refund"}, token).status_code == 200
    admin_client = Client()
    admin_client.force_login(admin_user)
    caller = Caller.objects.get(name="billing-app")
    page = admin_client.get(f"/admin/routing/caller/{caller.pk}/change/")
    assert page.status_code == 200
    assert token not in page.content.decode() and caller.token_sha256 not in page.content.decode()
    response = admin_client.post(
        "/admin/routing/caller/", {"action": "revoke", "index": 0, "_selected_action": [caller.pk]}, follow=True
    )
    assert "Revoked 1 caller token" in response.content.decode()
    assert_error(post(client, ROUTE, {"input": "refund"}, token), 401, "unauthorized")
