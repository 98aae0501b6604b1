"""A circuit breaker per backend, its state in Django's cache so every process shares it.

closed: calls go through; consecutive failures of the unhealthy classes are counted.
open: after `FOS_BREAKER_FAILURE_THRESHOLD` such failures in a row, the backend is skipped.
half-open: after `FOS_BREAKER_COOLDOWN_S`, one caller wins the trial call (an atomic cache.add);
a success closes the circuit, a failure opens it again for another cool-down.

Failures that say the request was wrong rather than the backend unwell (auth, context_length,
bad_response, content_refused, verification_failed) neither count nor reset the streak.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.core.cache import cache

UNHEALTHY_CLASSES = frozenset({"timeout", "connection", "server_error", "rate_limited"})
_KEEP_S = 24 * 3600  # forget a quiet backend's streak after a day

# Bumped whenever this process changes breaker state, so the planner's memo of shared state
# notices this process's own failures and recoveries at once.
_local_changes = 0


def local_changes() -> int:
    return _local_changes


def _changed() -> None:
    global _local_changes
    _local_changes += 1


def failures_key(slug: str) -> str:
    return f"breaker:{slug}:failures"


def opened_key(slug: str) -> str:
    return f"breaker:{slug}:opened"


def trial_key(slug: str) -> str:
    return f"breaker:{slug}:trial"


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed | open | half_open
    failures: int = 0
    opened_at: float | None = None

    @property
    def is_clean(self) -> bool:
        return self.state == "closed" and self.failures == 0

    def opened_label(self) -> str:
        if self.opened_at is None:
            return ""
        return datetime.fromtimestamp(self.opened_at, tz=timezone.utc).strftime("%H:%M:%S")

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures, "opened_at": self.opened_at}


def keys_for(slugs: list[str]) -> list[str]:
    return [key for slug in slugs for key in (failures_key(slug), opened_key(slug))]


def state_from(values: dict[str, Any], slug: str, *, now: float | None = None) -> BreakerState:
    """Read one backend's state out of a get_many() answer (see keys_for)."""
    failures = int(values.get(failures_key(slug)) or 0)
    opened_at = values.get(opened_key(slug))
    if opened_at is None:
        return BreakerState("closed", failures)
    now = time.time() if now is None else now
    if now - float(opened_at) < settings.FOS_BREAKER_COOLDOWN_S:
        return BreakerState("open", failures, float(opened_at))
    return BreakerState("half_open", failures, float(opened_at))


def states(slugs: list[str]) -> dict[str, BreakerState]:
    values = cache.get_many(keys_for(slugs))
    return {slug: state_from(values, slug) for slug in slugs}


def claim_trial(slug: str) -> bool:
    """Half-open: True for exactly one caller until the trial's outcome is recorded."""
    # The claim expires with the cool-down, so a trial whose process died does not wedge it.
    return cache.add(trial_key(slug), 1, timeout=max(1, math.ceil(settings.FOS_BREAKER_COOLDOWN_S)))


def record_success(slug: str, *, previous: BreakerState) -> None:
    if not previous.is_clean:
        cache.delete_many([failures_key(slug), opened_key(slug), trial_key(slug)])
        _changed()


def record_failure(slug: str, *, error_class: str, previous: BreakerState) -> None:
    try:
        _record_failure(slug, error_class=error_class, previous=previous)
    finally:
        _changed()


def _record_failure(slug: str, *, error_class: str, previous: BreakerState) -> None:
    if error_class not in UNHEALTHY_CLASSES:
        if previous.state == "half_open":
            # The trial reached a live backend: let the next caller run another trial.
            cache.delete(trial_key(slug))
        return
    key = failures_key(slug)
    if cache.add(key, 1, timeout=_KEEP_S):
        failures = 1
    else:
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=_KEEP_S)
            failures = 1
    if previous.state == "half_open":
        cache.set(opened_key(slug), time.time(), timeout=_KEEP_S)
        cache.delete(trial_key(slug))
    elif failures >= settings.FOS_BREAKER_FAILURE_THRESHOLD and previous.state == "closed":
        # add, not set: when several processes cross the threshold together, the first one's
        # time stands, so the cool-down is not pushed back by the stragglers.
        cache.add(opened_key(slug), time.time(), timeout=_KEEP_S)


def reset(slug: str) -> None:
    cache.delete_many([failures_key(slug), opened_key(slug), trial_key(slug)])
    _changed()
