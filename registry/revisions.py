"""Readable differences between two policy snapshots, for the revision history.

A snapshot is the dict `registry.policy.build_snapshot()` stores on each `PolicyRevision`:
`{"backends": {slug: entry}, "capabilities": {slug: entry}}`, each entry in the shape of the
policy file. The diff works on those dicts alone, so a revision recorded by an older version of
the code still compares with a newer one, and the result never depends on the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from registry.models import PolicyRevision

SECTIONS: dict[str, str] = {"backends": "backend", "capabilities": "capability"}

# Keys in the order the policy file writes them, so a diff reads like the file. JSON columns on
# PostgreSQL do not keep key order, hence an explicit one; unknown keys follow, sorted.
KEY_ORDER: dict[str, tuple[str, ...]] = {
    "backends": (
        "name", "adapter", "locality", "base_url", "model", "tool", "config", "secret",
        "cost_in_per_mtok", "cost_out_per_mtok", "timeout_s", "enabled", "notes",
    ),
    "capabilities": (
        "name", "intent", "privacy", "max_cost_usd", "latency_budget_ms", "fallback", "fallback_on",
        "instructions", "instructions_private", "verify", "log_input", "routes",
    ),
}
# Keys a snapshot leaves out when they hold their default, and what that default reads as.
ABSENT: dict[str, str] = {"max_cost_usd": "no limit", "instructions_private": "false", "name": "(none)", "notes": "(none)"}
MAX_TEXT = 160


@dataclass(frozen=True)
class Change:
    """One difference: a backend or capability added or removed, or one of its keys changed."""

    action: str  # "added" | "removed" | "changed"
    section: str  # "backends" | "capabilities"
    slug: str
    key: str = ""
    old: Any = None
    new: Any = None

    @property
    def subject(self) -> str:
        return f"{SECTIONS.get(self.section, self.section)} {self.slug}"

    @property
    def old_text(self) -> str:
        return format_value(self.old, key=self.key)

    @property
    def new_text(self) -> str:
        return format_value(self.new, key=self.key)

    @property
    def detail(self) -> str:
        """For an added or removed entry, its defining keys in a few words."""
        entry = self.new if self.action == "added" else self.old
        return describe_entry(self.section, entry if isinstance(entry, dict) else {})

    @property
    def text(self) -> str:
        if self.action == "changed":
            return f"{self.subject}: {self.key} {self.old_text} -> {self.new_text}"
        detail = self.detail
        return f"{self.subject} {self.action}" + (f" ({detail})" if detail else "")


def format_value(value: Any, *, key: str = "", limit: int | None = MAX_TEXT) -> str:
    """A snapshot value as a line of text: lists as [a, b], tables as JSON; cut at `limit`."""
    if value is None:
        return ABSENT.get(key, "(none)")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    elif isinstance(value, str):
        text = value if value else '""'
    else:
        text = str(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def entry_rows(section: str, entry: dict[str, Any]) -> list[tuple[str, str]]:
    """One backend's or capability's keys and whole values, in policy file order."""
    return [(key, format_value(entry.get(key), key=key, limit=None)) for key in _ordered_keys(section, entry, {})]


def describe_entry(section: str, entry: dict[str, Any]) -> str:
    if section == "backends":
        parts = [entry.get("adapter"), entry.get("locality"), entry.get("model") or entry.get("tool")]
        return ", ".join(str(part) for part in parts if part)
    if section == "capabilities":
        parts = [entry.get("intent"), entry.get("privacy")]
        text = ", ".join(str(part) for part in parts if part)
        routes = entry.get("routes")
        if isinstance(routes, list):
            text += f"; routes {format_value(routes)}"
        return text
    return ""


def _ordered_keys(section: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    preferred = KEY_ORDER.get(section, ())
    keys = set(before) | set(after)
    return [k for k in preferred if k in keys] + sorted(keys - set(preferred))


def diff_policies(*, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """What changed from snapshot `before` to snapshot `after`.

    `before` is `{}` for the first revision, which then reads as every entry added. Within a
    section, entries come in slug order; within an entry, keys in policy file order.
    """
    changes: list[Change] = []
    for section in SECTIONS:
        old_entries = (before or {}).get(section) or {}
        new_entries = (after or {}).get(section) or {}
        for slug in sorted(set(old_entries) | set(new_entries)):
            old, new = old_entries.get(slug), new_entries.get(slug)
            if old is None:
                changes.append(Change("added", section, slug, new=new))
            elif new is None:
                changes.append(Change("removed", section, slug, old=old))
            else:
                for key in _ordered_keys(section, old, new):
                    if old.get(key) != new.get(key):
                        changes.append(Change("changed", section, slug, key, old.get(key), new.get(key)))
    return changes


def contract_summary(*, slug: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """A revision summary for an edit of one capability's contract, naming each changed key:
    "classify-fast: latency_budget_ms 2000 -> 1500; fallback_on + verification_failed".
    Empty when nothing changed."""
    parts = []
    for key in _ordered_keys("capabilities", before, after):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key == "instructions":
            parts.append("instructions edited")
        elif key == "fallback_on" and isinstance(old, list) and isinstance(new, list):
            moves = [f"+ {c}" for c in new if c not in old] + [f"- {c}" for c in old if c not in new]
            parts.append(f"fallback_on {', '.join(moves)}" if moves else f"fallback_on reordered {format_value(new)}")
        else:
            parts.append(f"{key} {format_value(old, key=key)} -> {format_value(new, key=key)}")
    return f"{slug}: " + "; ".join(parts) if parts else ""


@dataclass(frozen=True)
class RevisionDiff:
    revision: PolicyRevision
    changes: list[Change]


def with_diffs(revisions: Iterable[PolicyRevision], *, previous: PolicyRevision | None) -> list[RevisionDiff]:
    """Pair each revision (newest first) with its diff against the one before it. `previous`
    is the revision just older than the last one given, or None when that one is the first."""
    ordered = list(revisions)
    older = ordered[1:] + [previous]
    return [
        RevisionDiff(revision, diff_policies(before=prior.snapshot if prior else {}, after=revision.snapshot))
        for revision, prior in zip(ordered, older)
    ]


def revisions_touching(*, slug: str, limit: int = 5, window: int = 50) -> list[RevisionDiff]:
    """The latest revisions (newest first) that changed capability `slug`, each with only its
    changes to that capability. Looks through the last `window` revisions, so a capability left
    alone for a long time shows none rather than making the page read the whole history."""
    recent = list(PolicyRevision.objects.order_by("-number")[: window + 1])
    found = []
    for entry in with_diffs(recent[:window], previous=recent[window] if len(recent) > window else None):
        mine = [c for c in entry.changes if c.section == "capabilities" and c.slug == slug]
        if mine:
            found.append(RevisionDiff(entry.revision, mine))
        if len(found) == limit:
            break
    return found
