"""Diffs between policy snapshots, as the revision history shows them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from registry.revisions import Change, contract_summary, diff_policies, revisions_touching

BEFORE: dict[str, Any] = {
    "backends": {
        "spark": {"adapter": "ollama", "locality": "local", "base_url": "http://spark:11434", "model": "llama3.1:8b"},
        "triage": {"adapter": "tool", "locality": "local", "tool": "keyword_classifier", "config": {"labels": {}}},
    },
    "capabilities": {
        "classify-fast": {
            "intent": "classification",
            "privacy": "hosted_allowed",
            "latency_budget_ms": 2000,
            "fallback_on": ["timeout"],
            "verify": {"kind": "one_of", "values": ["urgent", "other"]},
            "routes": ["spark", "triage"],
        }
    },
}


def after(change: Any) -> dict[str, Any]:
    snapshot = copy.deepcopy(BEFORE)
    change(snapshot)
    return snapshot


def texts(changes: list[Change]) -> list[str]:
    return [change.text for change in changes]


def test_it_reads_the_first_revision_as_everything_added() -> None:
    changes = diff_policies(before={}, after=BEFORE)
    assert [(c.action, c.section, c.slug) for c in changes] == [
        ("added", "backends", "spark"),
        ("added", "backends", "triage"),
        ("added", "capabilities", "classify-fast"),
    ]
    assert texts(changes) == [
        "backend spark added (ollama, local, llama3.1:8b)",
        "backend triage added (tool, local, keyword_classifier)",
        "capability classify-fast added (classification, hosted_allowed; routes [spark, triage])",
    ]


def test_it_finds_no_change_between_equal_snapshots() -> None:
    assert diff_policies(before=BEFORE, after=copy.deepcopy(BEFORE)) == []


def test_it_names_an_added_and_a_removed_backend() -> None:
    def swap(snapshot: dict[str, Any]) -> None:
        del snapshot["backends"]["triage"]
        snapshot["backends"]["frontier"] = {"adapter": "openai", "locality": "hosted", "model": "frontier-large"}

    assert texts(diff_policies(before=BEFORE, after=after(swap))) == [
        "backend frontier added (openai, hosted, frontier-large)",
        "backend triage removed (tool, local, keyword_classifier)",
    ]


def test_it_shows_a_verification_rule_change_old_and_new() -> None:
    def regex(snapshot: dict[str, Any]) -> None:
        snapshot["capabilities"]["classify-fast"]["verify"] = {"kind": "regex", "pattern": r"\d+"}

    [change] = diff_policies(before=BEFORE, after=after(regex))
    assert (change.action, change.key) == ("changed", "verify")
    assert change.old_text == '{"kind": "one_of", "values": ["urgent", "other"]}'
    assert change.new_text == r'{"kind": "regex", "pattern": "\\d+"}'


def test_it_shows_a_route_reorder_as_two_lists() -> None:
    def reorder(snapshot: dict[str, Any]) -> None:
        snapshot["capabilities"]["classify-fast"]["routes"] = ["triage", "spark"]

    assert texts(diff_policies(before=BEFORE, after=after(reorder))) == [
        "capability classify-fast: routes [spark, triage] -> [triage, spark]"
    ]


def test_it_lists_changed_keys_in_policy_file_order_with_absent_defaults() -> None:
    def edit(snapshot: dict[str, Any]) -> None:
        entry = snapshot["capabilities"]["classify-fast"]
        entry["routes"] = ["spark"]
        entry["max_cost_usd"] = 0.002
        entry["latency_budget_ms"] = 1500
        entry["privacy"] = "local_only"
        snapshot["backends"]["spark"]["model"] = "llama3.2:3b"

    assert texts(diff_policies(before=BEFORE, after=after(edit))) == [
        "backend spark: model llama3.1:8b -> llama3.2:3b",
        "capability classify-fast: privacy hosted_allowed -> local_only",
        "capability classify-fast: max_cost_usd no limit -> 0.002",
        "capability classify-fast: latency_budget_ms 2000 -> 1500",
        "capability classify-fast: routes [spark, triage] -> [spark]",
    ]


def test_it_shortens_long_values() -> None:
    def long(snapshot: dict[str, Any]) -> None:
        snapshot["capabilities"]["classify-fast"]["instructions"] = "x" * 500

    [change] = diff_policies(before=BEFORE, after=after(long))
    assert change.old_text == "(none)" and len(change.new_text) == 160 and change.new_text.endswith("…")


def test_it_summarises_a_contract_edit() -> None:
    old = BEFORE["capabilities"]["classify-fast"]
    new = {**old, "latency_budget_ms": 1500, "fallback_on": ["verification_failed"], "instructions": "new"}
    assert contract_summary(slug="classify-fast", before=old, after=new) == (
        "classify-fast: latency_budget_ms 2000 -> 1500; fallback_on + verification_failed, - timeout; instructions edited"
    )
    assert contract_summary(slug="classify-fast", before=old, after=dict(old)) == ""


@pytest.mark.django_db
def test_it_finds_the_revisions_that_touched_a_capability(install_policy: Any) -> None:
    from registry.models import Capability
    from registry.policy import record_revision

    install_policy(
        backends={"triage": {"adapter": "tool", "locality": "local", "tool": "template", "config": {"template": "x"}}},
        capabilities={
            "a": {"intent": "lookup", "privacy": "local_only", "routes": ["triage"]},
            "b": {"intent": "lookup", "privacy": "local_only", "routes": ["triage"]},
        },
    )
    Capability.objects.filter(slug="a").update(latency_budget_ms=10)
    record_revision(author="olivia", summary="a faster")
    Capability.objects.filter(slug="b").update(latency_budget_ms=20)
    record_revision(author="olivia", summary="b faster")
    found = revisions_touching(slug="a")
    assert [(entry.revision.summary, texts(entry.changes)) for entry in found] == [
        ("a faster", ["capability a: latency_budget_ms 30000 -> 10"]),
        ("test policy", ["capability a added (lookup, local_only; routes [triage])"]),
    ]
    # Only the newest revision is looked at: it changed b alone.
    assert revisions_touching(slug="a", window=1) == []
    assert [entry.revision.summary for entry in revisions_touching(slug="a", window=2)] == ["a faster"]
