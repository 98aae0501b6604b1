"""What every adapter promises: plain values in, plain values out, one error type.

An adapter speaks one wire protocol (or runs one deterministic tool). It gets the backend's
spec from the policy snapshot, the conversation and a timeout, and returns a `Completion` or
raises `AdapterError` with exactly one error class. It never retries: the executor is the only
retry loop. It never lets a secret's value reach an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator

from registry.contracts import ERROR_CLASSES

# Error classes an adapter may raise. verification_failed and budget belong to the executor.
ADAPTER_ERROR_CLASSES = tuple(c for c in ERROR_CLASSES if c not in ("verification_failed", "budget"))

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class BackendSpec:
    """One backend as the policy snapshot describes it (see registry.policy.backend_policy)."""

    slug: str
    adapter: str
    locality: str
    base_url: str = ""
    model: str = ""
    tool: str = ""
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    secret: str = ""
    cost_in_per_mtok: Decimal = Decimal("0")
    cost_out_per_mtok: Decimal = Decimal("0")
    timeout_s: float = 30.0
    enabled: bool = True

    @classmethod
    def from_policy(cls, slug: str, entry: dict[str, Any]) -> BackendSpec:
        return cls(
            slug=slug,
            adapter=entry["adapter"],
            locality=entry["locality"],
            base_url=entry.get("base_url", ""),
            model=entry.get("model", ""),
            tool=entry.get("tool", ""),
            config=entry.get("config") or {},
            secret=entry.get("secret", ""),
            cost_in_per_mtok=Decimal(str(entry.get("cost_in_per_mtok", 0))),
            cost_out_per_mtok=Decimal(str(entry.get("cost_out_per_mtok", 0))),
            timeout_s=float(entry.get("timeout_s", 30)),
            enabled=bool(entry.get("enabled", True)),
        )

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (self.cost_in_per_mtok * tokens_in + self.cost_out_per_mtok * tokens_out) / MILLION


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


class AdapterError(Exception):
    """A failed call, classified. `detail` is upstream text with secrets already scrubbed."""

    def __init__(
        self,
        error_class: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        if error_class not in ADAPTER_ERROR_CLASSES:
            raise ValueError(f"unknown adapter error class {error_class!r}")
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class Adapter:
    """Base class. Subclasses set `protocol` and implement `complete` (and `stream` if they can)."""

    protocol: str = ""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec

    def complete(self, *, messages: list[dict[str, str]], instructions: str, timeout: float) -> Completion:
        """One call. `messages` are {"role": "user"|"assistant", "content": str} in order;
        `instructions` is the capability's system prompt (may be empty); `timeout` in seconds
        is already the smaller of the backend's timeout and what is left of the latency budget."""
        raise NotImplementedError

    def stream(
        self, *, messages: list[dict[str, str]], instructions: str, timeout: float
    ) -> Iterator[str | Completion]:
        """Yield text deltas as they arrive, then one final Completion with the whole text and
        usage. Errors before the first delta and after it are both AdapterError."""
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections."""
