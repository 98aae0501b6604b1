from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core import serializers
from django.db import connection

from registry.models import Backend, Capability
from registry.policy import record_revision
from routing import RouteFailed, UnknownCapability, run
from routing.models import Attempt, RouteLog
from routing.planner import plan

TRIAGE = {
    "adapter": "tool",
    "locality": "local",
    "tool": "keyword_classifier",
    "config": {"labels": {"urgent": ["outage", "down"], "billing": ["invoice", "refund"]}, "default": "other"},
}


def http_backend(sim: Any, protocol: str, behaviours: str, **extra: Any) -> dict[str, Any]:
    fields = {
        "adapter": protocol,
        "locality": "local",
        "base_url": sim.base_url(protocol, behaviours),
        "model": "sim-model",
        "timeout_s": 5.0,
    }
    fields.update(extra)
    return fields


def classify(routes: list[str], **extra: Any) -> dict[str, Any]:
    fields = {
        "intent": "classification",
        "privacy": "hosted_allowed",
        "verify": {"kind": "one_of", "values": ["urgent", "billing", "other"]},
        "routes": routes,
    }
    fields.update(extra)
    return fields


def test_it_answers_from_the_primary_and_logs_why(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=billing"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    result = run("classify", "the invoice is wrong", caller="billing-app")
    assert (result.output, result.outcome) == ("billing", "primary")
    assert result.verification["passed"] is True
    entry = RouteLog.objects.get(pk=result.route_id)
    assert (entry.backend, entry.caller, entry.outcome, entry.fallback_used) == ("llama", "billing-app", "primary", False)
    assert entry.fallback_eligible is True
    assert entry.input_chars == len("the invoice is wrong")
    assert len(entry.input_sha256) == 64
    assert any(reason.startswith("llama (primary): kept") for reason in entry.reasons)
    assert [a.backend for a in entry.attempts.all()] == ["llama"]
    assert sim.calls("answer=billing") == 1


def test_it_falls_back_in_order_until_a_route_answers(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={
            "first": http_backend(sim, "openai", "status=500"),
            "second": http_backend(sim, "anthropic", "reset"),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["first", "second", "triage"])},
    )
    result = run("classify", "the site is down")
    assert (result.output, result.outcome) == ("urgent", "fallback")
    attempts = list(RouteLog.objects.get(pk=result.route_id).attempts.values_list("backend", "error_class"))
    assert attempts == [("first", "server_error"), ("second", "connection"), ("triage", "")]


@pytest.mark.parametrize(
    ("behaviour", "error_class"),
    [("status=401", "auth"), ("context_length", "context_length"), ("malformed", "bad_response")],
)
def test_it_does_not_fall_back_on_classes_outside_fallback_on(
    sim: Any, install_policy: Any, behaviour: str, error_class: str
) -> None:
    install_policy(
        backends={"first": http_backend(sim, "openai", behaviour), "second": http_backend(sim, "openai", "answer=other")},
        capabilities={"classify": classify(["first", "second"])},
    )
    with pytest.raises(RouteFailed) as failed:
        run("classify", "hello")
    assert failed.value.error_class == error_class
    assert sim.calls("answer=other") == 0
    entry = RouteLog.objects.get(pk=failed.value.route_id)
    assert entry.outcome == "failed" and entry.error_class == error_class
    assert f"not falling back: {error_class} is not in fallback_on" in entry.reasons


def test_it_fails_closed_when_the_contract_says_so(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"first": http_backend(sim, "ollama", "status=503"), "triage": TRIAGE},
        capabilities={"classify": classify(["first", "triage"], fallback="fail_closed")},
    )
    with pytest.raises(RouteFailed) as failed:
        run("classify", "refund please")
    entry = RouteLog.objects.get(pk=failed.value.route_id)
    assert entry.fallback_eligible is False
    assert [a.backend for a in entry.attempts.all()] == ["first"]
    assert any("fail_closed" in reason for reason in failed.value.reasons)


def test_it_never_sends_a_local_only_call_to_a_hosted_backend(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={
            "local-a": http_backend(sim, "ollama", "reset"),
            "local-b": http_backend(sim, "openai", "status=500"),
            "hosted": http_backend(sim, "openai", "answer=urgent,hosted", locality="hosted"),
        },
        # Written straight through the ORM, past validation, as a corrupted or hand-edited
        # policy would be: the router must hold the boundary on its own.
        capabilities={"private": classify(["local-a", "hosted", "local-b"], privacy="local_only")},
    )
    with pytest.raises(RouteFailed) as failed:
        run("private", "my medical history")
    assert sim.calls("answer=urgent,hosted") == 0
    entry = RouteLog.objects.get(pk=failed.value.route_id)
    assert "hosted (fallback 1): skipped: hosted backend excluded: privacy=local_only" in entry.reasons
    assert [a.backend for a in entry.attempts.all()] == ["local-a", "local-b"]
    assert set(entry.attempts.values_list("locality", flat=True)) == {"local"}


def test_it_falls_back_to_a_tool_when_verification_fails(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=probably%20billing"), "triage": TRIAGE},
        capabilities={
            "classify": classify(
                ["llama", "triage"], fallback_on=["timeout", "server_error", "verification_failed"]
            )
        },
    )
    result = run("classify", "refund my invoice")
    assert (result.output, result.outcome) == ("billing", "fallback")
    first, second = RouteLog.objects.get(pk=result.route_id).attempts.all()
    assert (first.error_class, first.verification["passed"]) == ("verification_failed", False)
    assert (second.backend, second.verification["passed"]) == ("triage", True)


def test_it_skips_a_route_whose_estimated_cost_exceeds_the_tolerance(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={
            "frontier": http_backend(
                sim, "openai", "answer=urgent", locality="hosted", cost_in_per_mtok=50, cost_out_per_mtok=200
            ),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["frontier", "triage"], max_cost_usd="0.0001")},
    )
    result = run("classify", "x " * 400)
    assert result.backend == "triage"
    assert sim.calls("answer=urgent") == 0
    reasons = RouteLog.objects.get(pk=result.route_id).reasons
    assert any(r.startswith("frontier (primary): skipped: estimated cost ") and "> tolerance 0.0001" in r for r in reasons)


def test_it_cuts_a_slow_primary_short_at_the_latency_budget(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"slow": http_backend(sim, "openai", "delay=3000,answer=urgent"), "triage": TRIAGE},
        capabilities={"classify": classify(["slow", "triage"], latency_budget_ms=300)},
    )
    started = time.perf_counter()
    with pytest.raises(RouteFailed) as failed:
        run("classify", "outage")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5
    entry = RouteLog.objects.get(pk=failed.value.route_id)
    assert entry.error_class == "budget"
    assert entry.attempts.get().error_class == "budget"
    assert "triage: not tried: latency budget of 300 ms spent" in entry.reasons or len(entry.attempts.all()) == 1


def test_it_raises_lookup_error_for_an_unknown_capability_before_logging(install_policy: Any) -> None:
    install_policy(backends={"triage": TRIAGE}, capabilities={"classify": classify(["triage"])})
    with pytest.raises(LookupError):
        run("nope", "hello")
    with pytest.raises(UnknownCapability):
        run("nope", "hello")
    assert RouteLog.objects.count() == 0


@pytest.mark.parametrize("bad", [[], [{"role": "robot", "content": "x"}], [{"role": "user", "content": 3}], 42])
def test_it_rejects_malformed_messages_before_logging(install_policy: Any, bad: Any) -> None:
    install_policy(backends={"triage": TRIAGE}, capabilities={"classify": classify(["triage"])})
    with pytest.raises(ValueError):
        run("classify", bad)
    assert RouteLog.objects.count() == 0


def test_it_accepts_messages_and_stores_only_a_hash(install_policy: Any) -> None:
    install_policy(backends={"triage": TRIAGE}, capabilities={"classify": classify(["triage"])})
    secret_text = "MARKER-7731 the invoice is wrong"
    result = run("classify", [{"role": "user", "content": secret_text}], metadata={"ticket": "FOS-1"})
    entry = RouteLog.objects.get(pk=result.route_id)
    assert result.output == "billing"
    assert entry.metadata == {"ticket": "FOS-1"}
    assert entry.input_preview == ""
    assert "MARKER-7731" not in serializers.serialize("json", [entry, *entry.attempts.all()])


def test_it_keeps_a_redacted_preview_when_the_contract_asks(install_policy: Any) -> None:
    install_policy(
        backends={"triage": TRIAGE},
        capabilities={"classify": classify(["triage"], log_input="redacted")},
    )
    result = run("classify", "refund for jane.doe@example.com please")
    entry = RouteLog.objects.get(pk=result.route_id)
    assert "refund for" in entry.input_preview
    assert "jane.doe@example.com" not in entry.input_preview


def test_it_reloads_the_planner_snapshot_after_a_policy_edit(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=urgent"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    assert plan("classify", input_chars=10).candidates[0].backend.slug == "llama"
    Backend.objects.filter(slug="llama").update(enabled=False)
    # Without a revision the router keeps planning from the snapshot it has.
    assert plan("classify", input_chars=10).candidates[0].backend.slug == "llama"
    revision = record_revision(author="operator", summary="disable llama")
    edited = plan("classify", input_chars=10)
    assert edited.revision == revision.number
    assert [c.backend.slug for c in edited.candidates] == ["triage"]
    assert "llama (primary): skipped: backend disabled" in edited.reasons
    result = run("classify", "invoice")
    assert RouteLog.objects.get(pk=result.route_id).policy_revision == revision.number


def test_it_plans_without_querying_the_database(sim: Any, install_policy: Any, django_assert_num_queries: Any) -> None:
    install_policy(backends={"triage": TRIAGE}, capabilities={"classify": classify(["triage"])})
    plan("classify", input_chars=5)
    with django_assert_num_queries(0):
        plan("classify", input_chars=5)


def test_it_skips_a_backend_whose_secret_does_not_resolve(
    sim: Any, install_policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOS_TEST_MISSING_KEY", raising=False)
    install_policy(
        backends={
            "frontier": http_backend(sim, "openai", "answer=urgent", locality="hosted", secret_ref="env:FOS_TEST_MISSING_KEY"),
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["frontier", "triage"])},
    )
    result = run("classify", "outage")
    assert result.backend == "triage"
    assert (
        "frontier (primary): skipped: secret reference env:FOS_TEST_MISSING_KEY does not resolve"
        in RouteLog.objects.get(pk=result.route_id).reasons
    )


def test_it_sends_the_secret_as_the_provider_expects_and_logs_it_nowhere(
    sim: Any, install_policy: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-proj-LEAKCANARY0123456789abcdefXYZ"
    monkeypatch.setenv("FOS_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    install_policy(
        backends={
            "good-openai": http_backend(sim, "openai", f"key={secret},answer=urgent", secret_ref="env:FOS_TEST_KEY"),
            "good-anthropic": http_backend(sim, "anthropic", f"key={secret},answer=billing", secret_ref="env:FOS_TEST_KEY"),
            "wrong": http_backend(sim, "openai", "key=another-key,answer=other", secret_ref="env:FOS_TEST_KEY"),
        },
        capabilities={
            "a": classify(["good-openai"]),
            "b": classify(["good-anthropic"]),
            "c": classify(["wrong"]),
        },
    )
    assert run("a", "hello").output == "urgent"
    assert run("b", "hello").output == "billing"
    with pytest.raises(RouteFailed) as failed:
        run("c", "hello")
    assert failed.value.error_class == "auth"
    sinks = [
        serializers.serialize("json", [*RouteLog.objects.all(), *Attempt.objects.all()]),
        str(failed.value),
        repr(failed.value.reasons),
        caplog.text,
    ]
    for sink in sinks:
        assert secret not in sink
        assert "LEAKCANARY" not in sink


@pytest.mark.django_db(transaction=True)
def test_it_writes_exactly_one_route_log_per_call_under_concurrency(sim: Any, install_policy: Any) -> None:
    install_policy(
        backends={
            "flaky": http_backend(sim, "openai", "status=500", timeout_s=2.0),
            "resetting": http_backend(sim, "ollama", "reset"),
            "ok": http_backend(sim, "anthropic", "delay=20,answer=other"),
            "triage": TRIAGE,
        },
        capabilities={
            "mixed": classify(["flaky", "resetting", "ok", "triage"]),
            "strict": classify(["flaky"], fallback="fail_closed"),
        },
    )

    def call(i: int) -> tuple[str, int]:
        capability = "strict" if i % 4 == 0 else "mixed"
        try:
            result = run(capability, f"message {i} outage", caller=f"c{i}")
        except RouteFailed as failed:
            return "failed", failed.route_id
        finally:
            connection.close()
        return result.outcome, result.route_id

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, range(32)))
    route_ids = [route_id for _, route_id in results]
    assert len(set(route_ids)) == 32
    assert RouteLog.objects.count() == 32
    assert sorted(RouteLog.objects.values_list("caller", flat=True)) == sorted(f"c{i}" for i in range(32))
    assert sum(1 for outcome, _ in results if outcome == "failed") == 8
    for entry in RouteLog.objects.all():
        # Once "flaky" has failed often enough its circuit opens, and a strict call has
        # nothing left to try: that is logged too, with the reason.
        assert entry.attempts.count() >= 1 or any("circuit open" in r for r in entry.reasons)
        assert json.dumps(entry.reasons)
