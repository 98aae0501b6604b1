from __future__ import annotations

from typing import Any

import pytest

from registry.models import Capability, PolicyRevision

SPARK = {
    "adapter": "ollama",
    "locality": "local",
    "base_url": "http://127.0.0.1:9/",
    "model": "llama3.1:8b",
}
FRONTIER = {
    "adapter": "openai",
    "locality": "hosted",
    "base_url": "https://api.example.com/v1",
    "model": "frontier-large",
    "secret_ref": "env:FRONTIER_API_KEY",
    "cost_in_per_mtok": "1.25",
    "cost_out_per_mtok": "10",
}
TRIAGE = {
    "adapter": "tool",
    "locality": "local",
    "tool": "keyword_classifier",
    "config": {"labels": {"urgent": ["outage", "down"], "billing": ["invoice", "refund"]}, "default": "other"},
}


@pytest.fixture
def policy(install_policy: Any) -> PolicyRevision:
    """Three backends (local, hosted, tool); classify-fast routes through all three, redact-local
    stays on the local ones."""
    return install_policy(
        backends={"spark": SPARK, "frontier": FRONTIER, "triage": TRIAGE},
        capabilities={
            "classify-fast": {
                "intent": "classification",
                "privacy": "hosted_allowed",
                "max_cost_usd": "0.001",
                "latency_budget_ms": 2000,
                "verify": {"kind": "one_of", "values": ["urgent", "billing", "other"]},
                "instructions": "Label the message. Answer with the label only.",
                "routes": ["spark", "frontier", "triage"],
            },
            "redact-local": {
                "intent": "transformation",
                "privacy": "local_only",
                "routes": ["spark", "triage"],
            },
        },
    )


@pytest.fixture
def classify(policy: PolicyRevision) -> Capability:
    return Capability.objects.get(slug="classify-fast")


def contract_data(capability: Capability, **changes: Any) -> dict[str, Any]:
    """The contract form as a browser would post it, unchanged, with `changes` applied."""
    rule = capability.verify
    data: dict[str, Any] = {
        "privacy": capability.privacy,
        "max_cost_usd": "" if capability.max_cost_usd is None else str(capability.max_cost_usd),
        "latency_budget_ms": str(capability.latency_budget_ms),
        "fallback": capability.fallback,
        "fallback_on": list(capability.fallback_on),
        "verify": rule["kind"],
        "verify_values": "\n".join(rule.get("values", [])),
        "verify_pattern": rule.get("pattern", ""),
        "verify_schema": "",
        "verify_limit": str(rule.get("limit", "")),
        "instructions": capability.instructions,
        "log_input": capability.log_input,
    }
    if capability.instructions_private:
        data["instructions_private"] = "on"
    data.update(changes)
    return data
