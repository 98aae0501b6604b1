"""Health probes: one small call to one backend, outside the route log and the breaker.

A probe is an operator's question ("does this backend answer right now?"), not traffic: it
writes no route log and leaves the circuit breaker alone. Its result waits in the cache under
the probe's task id for `RESULT_TTL_S`, for the console to poll.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from routing.adapters import get_adapter
from routing.adapters.base import AdapterError, BackendSpec
from routing.redaction import redact

RESULT_TTL_S = 600
MAX_TIMEOUT_S = 10.0
PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")


@dataclass(frozen=True)
class ProbeResult:
    backend: str
    state: str  # pending | done
    ok: bool = False
    error_class: str = ""
    detail: str = ""
    latency_ms: float | None = None
    checked_at: str = ""  # ISO 8601, UTC

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def checked(self) -> datetime | None:
        return datetime.fromisoformat(self.checked_at) if self.checked_at else None


def cache_key(task_id: str) -> str:
    return f"probe:{task_id}"


def mark_pending(*, task_id: str, slug: str) -> None:
    """Record that a probe was asked for, so a poll before the worker answers sees 'pending'."""
    cache.set(cache_key(task_id), ProbeResult(backend=slug, state="pending").as_dict(), timeout=RESULT_TTL_S)


def load(*, task_id: str) -> ProbeResult | None:
    """The probe's result, 'pending' while it runs, or None if unknown or expired."""
    if not TASK_ID.fullmatch(task_id):
        return None
    stored = cache.get(cache_key(task_id))
    return ProbeResult(**stored) if isinstance(stored, dict) else None


def probe(*, spec: BackendSpec) -> ProbeResult:
    """Make one health call to `spec`'s backend. Never raises: a failure is the result."""
    started = time.perf_counter()
    error_class, detail = "", ""
    try:
        get_adapter(spec).complete(
            messages=PROBE_MESSAGES, instructions="", timeout=min(spec.timeout_s, MAX_TIMEOUT_S)
        )
    except AdapterError as exc:
        error_class, detail = exc.error_class, exc.detail
    except Exception as exc:  # a bug in an adapter is still an answer to the operator's question
        error_class, detail = "bad_response", f"adapter error ({type(exc).__name__})"
    return ProbeResult(
        backend=spec.slug,
        state="done",
        ok=not error_class,
        error_class=error_class,
        detail=redact(detail).text[:300] if detail else "",
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        checked_at=timezone.now().isoformat(),
    )


def probe_and_store(*, task_id: str, slug: str, backends: dict[str, BackendSpec]) -> ProbeResult:
    spec = backends.get(slug)
    if spec is None:
        result = ProbeResult(
            backend=slug, state="done", error_class="unknown_backend",
            detail="not in the current policy", checked_at=timezone.now().isoformat(),
        )
    else:
        result = probe(spec=spec)
    cache.set(cache_key(task_id), result.as_dict(), timeout=RESULT_TTL_S)
    return result


def store_failure(*, task_id: str, slug: str, detail: str) -> None:
    """Record a probe that could not be run at all (say, the task queue is down)."""
    result = ProbeResult(
        backend=slug, state="done", error_class="not_run", detail=detail, checked_at=timezone.now().isoformat()
    )
    cache.set(cache_key(task_id), result.as_dict(), timeout=RESULT_TTL_S)
