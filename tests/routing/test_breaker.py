from __future__ import annotations

import time
from typing import Any

import pytest

from routing import breaker, run
from routing.models import RouteLog
from tests.routing.test_executor import TRIAGE, classify, http_backend

COOLDOWN_S = 0.3


@pytest.fixture
def quick_breaker(settings: Any) -> None:
    settings.FOS_BREAKER_FAILURE_THRESHOLD = 2
    settings.FOS_BREAKER_COOLDOWN_S = COOLDOWN_S


def attempted(route_id: int) -> list[tuple[str, str]]:
    return list(RouteLog.objects.get(pk=route_id).attempts.values_list("backend", "error_class"))


def test_it_opens_after_consecutive_failures_then_closes_after_a_good_trial(
    sim: Any, install_policy: Any, quick_breaker: None
) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "fail_first=2,answer=urgent"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    for _ in range(2):
        result = run("classify", "the invoice")
        assert attempted(result.route_id) == [("llama", "server_error"), ("triage", "")]
    assert breaker.states(["llama"])["llama"].state == "open"

    skipped = run("classify", "the invoice")
    assert attempted(skipped.route_id) == [("triage", "")]
    reasons = RouteLog.objects.get(pk=skipped.route_id).reasons
    assert any(r.startswith("llama (primary): skipped: circuit open since ") for r in reasons)
    assert sim.calls("fail_first=2,answer=urgent") == 2

    time.sleep(COOLDOWN_S + 0.05)
    assert breaker.states(["llama"])["llama"].state == "half_open"
    trial = run("classify", "the invoice")
    assert (trial.backend, trial.outcome) == ("llama", "primary")
    assert any("circuit half-open" in r for r in RouteLog.objects.get(pk=trial.route_id).reasons)
    assert breaker.states(["llama"])["llama"].is_clean


def test_it_reopens_when_the_trial_call_fails(sim: Any, install_policy: Any, quick_breaker: None) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "fail_first=3,answer=urgent"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    run("classify", "x")
    run("classify", "x")
    first_opened = breaker.states(["llama"])["llama"].opened_at
    time.sleep(COOLDOWN_S + 0.05)
    trial = run("classify", "x")
    assert attempted(trial.route_id) == [("llama", "server_error"), ("triage", "")]
    state = breaker.states(["llama"])["llama"]
    assert state.state == "open" and state.opened_at > first_opened
    time.sleep(COOLDOWN_S + 0.05)
    assert run("classify", "x").backend == "llama"
    assert breaker.states(["llama"])["llama"].state == "closed"


def test_it_gives_the_half_open_trial_to_one_caller_only(install_policy: Any, quick_breaker: None) -> None:
    breaker.record_failure("llama", error_class="timeout", previous=breaker.BreakerState("closed"))
    breaker.record_failure("llama", error_class="timeout", previous=breaker.BreakerState("closed", 1))
    time.sleep(COOLDOWN_S + 0.05)
    assert breaker.states(["llama"])["llama"].state == "half_open"
    assert breaker.claim_trial("llama") is True
    assert breaker.claim_trial("llama") is False


@pytest.mark.parametrize("behaviour", ["context_length", "status=400", "status=401"])
def test_it_never_opens_on_request_errors(sim: Any, install_policy: Any, quick_breaker: None, behaviour: str) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "openai", behaviour), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    for _ in range(4):
        with pytest.raises(Exception):
            run("classify", "x")
    assert breaker.states(["llama"])["llama"].state == "closed"
    assert sim.calls(behaviour) == 4


def test_it_resets_the_streak_on_success(install_policy: Any, quick_breaker: None) -> None:
    breaker.record_failure("b", error_class="server_error", previous=breaker.BreakerState("closed"))
    state = breaker.states(["b"])["b"]
    assert state.failures == 1
    breaker.record_success("b", previous=state)
    breaker.record_failure("b", error_class="server_error", previous=breaker.BreakerState("closed"))
    assert breaker.states(["b"])["b"].state == "closed"
