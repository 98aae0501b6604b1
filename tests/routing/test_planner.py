from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache

from registry.policy import REVISION_CACHE_KEY
from routing import breaker
from routing.planner import plan
from tests.routing.test_executor import TRIAGE, classify, http_backend


def kept(capability: str) -> list[str]:
    return [c.backend.slug for c in plan(capability, input_chars=10).candidates]


def test_it_sees_another_process_open_a_circuit_once_its_memo_expires(
    sim: Any, install_policy: Any, settings: Any
) -> None:
    settings.FOS_SHARED_STATE_TTL_S = 0.2
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "echo"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    assert kept("classify") == ["llama", "triage"]
    # What another process writes through the shared cache when it opens the circuit.
    cache.set_many({breaker.failures_key("llama"): 5, breaker.opened_key("llama"): time.time()})
    assert kept("classify") == ["llama", "triage"]
    time.sleep(0.25)
    assert kept("classify") == ["triage"]


def test_it_reads_shared_state_on_every_plan_when_the_ttl_is_zero(
    sim: Any, install_policy: Any, settings: Any
) -> None:
    settings.FOS_SHARED_STATE_TTL_S = 0
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "echo"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    assert kept("classify") == ["llama", "triage"]
    cache.set_many({breaker.failures_key("llama"): 5, breaker.opened_key("llama"): time.time()})
    assert kept("classify") == ["triage"]


def test_it_sees_its_own_breaker_changes_at_once(sim: Any, install_policy: Any, settings: Any) -> None:
    settings.FOS_SHARED_STATE_TTL_S = 60
    settings.FOS_BREAKER_FAILURE_THRESHOLD = 1
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "echo"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    assert kept("classify") == ["llama", "triage"]
    breaker.record_failure("llama", error_class="timeout", previous=breaker.BreakerState("closed"))
    assert kept("classify") == ["triage"]


def test_it_reloads_the_snapshot_when_another_process_publishes_a_revision(
    sim: Any, install_policy: Any, settings: Any
) -> None:
    settings.FOS_SHARED_STATE_TTL_S = 0
    revision = install_policy(backends={"triage": TRIAGE}, capabilities={"classify": classify(["triage"])})
    assert plan("classify", input_chars=1).revision == revision.number
    # Another process committed revision N+1 and published its number; this process has not
    # seen it yet, so it plans from the newest revision in the database.
    cache.set(REVISION_CACHE_KEY, revision.number + 1)
    assert plan("classify", input_chars=1).revision == revision.number


def test_it_never_names_a_pasted_secret_in_its_reasons(install_policy: Any) -> None:
    from registry.models import Backend

    install_policy(
        backends={
            "frontier": {
                "adapter": "openai", "locality": "hosted", "base_url": "https://api.example.com/v1", "model": "m",
            },
            "triage": TRIAGE,
        },
        capabilities={"classify": classify(["frontier", "triage"])},
    )
    # A key pasted where the reference belongs, written past validation.
    Backend.objects.filter(slug="frontier").update(secret_ref="sk-proj-PASTEDKEY123456")
    from registry.policy import record_revision

    record_revision(author="test", summary="bad edit")
    reasons = plan("classify", input_chars=1).reasons
    assert "frontier (primary): skipped: secret reference (not a valid reference) does not resolve" in reasons
    assert "PASTEDKEY" not in repr(reasons)
