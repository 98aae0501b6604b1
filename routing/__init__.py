"""Product code's way in: `from routing import run, RouteFailed`.

    result = run("classify-fast", "the invoice is wrong")
    result.output, result.route_id, result.outcome, result.verification

Imports are lazy so that `routing` can be imported before Django's apps are ready.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run", "RouteFailed", "RouteResult", "UnknownCapability"]


def __getattr__(name: str) -> Any:
    if name in {"run", "RouteFailed", "RouteResult"}:
        from routing import executor

        return getattr(executor, name)
    if name == "UnknownCapability":
        from routing.planner import UnknownCapability

        return UnknownCapability
    raise AttributeError(name)
