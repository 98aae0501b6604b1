"""The way to an adapter: `get_adapter(spec)` gives the one instance kept for that backend.

One instance per backend means one pool of kept-alive connections per backend, shared by every
thread of the process. When a policy edit changes a backend's spec, the next call builds a new
instance and the old one is closed once the calls still running on it have finished.
"""

from __future__ import annotations

import importlib
import threading

from routing.adapters.base import Adapter, AdapterError, BackendSpec

# Imported on first use: the tool adapter pulls in the tools, the HTTP ones httpx.
ADAPTER_CLASSES = {
    "openai": "routing.adapters.openai.OpenAIAdapter",
    "anthropic": "routing.adapters.anthropic.AnthropicAdapter",
    "ollama": "routing.adapters.ollama.OllamaAdapter",
    "tool": "routing.adapters.tool.ToolAdapter",
}

_adapters: dict[str, Adapter] = {}
_lock = threading.Lock()


def adapter_class(name: str) -> type[Adapter]:
    try:
        module_name, _, class_name = ADAPTER_CLASSES[name].rpartition(".")
    except KeyError:
        raise AdapterError("bad_response", f"no adapter for protocol {name!r}") from None
    return getattr(importlib.import_module(module_name), class_name)


def get_adapter(spec: BackendSpec) -> Adapter:
    adapter = _adapters.get(spec.slug)
    # The common case takes no lock: a dict read is atomic and specs compare by value.
    if adapter is not None and adapter.spec == spec:
        return adapter
    with _lock:
        adapter = _adapters.get(spec.slug)
        if adapter is not None and adapter.spec == spec:
            return adapter
        fresh = adapter_class(spec.adapter)(spec)
        _adapters[spec.slug] = fresh
    if adapter is not None:
        _retire(adapter)
    return fresh


def close_all() -> None:
    """Close every kept adapter (process shutdown, tests)."""
    with _lock:
        adapters = list(_adapters.values())
        _adapters.clear()
    for adapter in adapters:
        adapter.close()


def _retire(adapter: Adapter) -> None:
    retire = getattr(adapter, "retire", None)
    if retire is not None:
        retire()
    else:
        adapter.close()


__all__ = ["Adapter", "AdapterError", "BackendSpec", "adapter_class", "close_all", "get_adapter"]
