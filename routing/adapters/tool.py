"""The adapter for deterministic tools (protocol "tool"): no network, no model, no tokens.

A tool answers the last user message alone. The capability's instructions are a prompt for a
model; a tool's behaviour is its config, which an operator can read in full.
"""

from __future__ import annotations

from collections.abc import Iterator

from routing.adapters.base import Adapter, AdapterError, Completion
from routing.tools import TOOLS, ToolConfigError


def last_user_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content") or ""
    return ""


class ToolAdapter(Adapter):
    protocol = "tool"

    def complete(self, *, messages: list[dict[str, str]], instructions: str, timeout: float) -> Completion:
        # `timeout` is not enforced: tools are pure functions that finish in microseconds, and
        # there is no I/O to abandon.
        tool = TOOLS.get(self.spec.tool)
        if tool is None:
            known = ", ".join(TOOLS)
            raise AdapterError("bad_response", f"unknown tool {self.spec.tool!r} on backend {self.spec.slug}; known: {known}")
        try:
            text = tool(text=last_user_text(messages), config=self.spec.config)
        except ToolConfigError as exc:
            raise AdapterError("bad_response", f"tool {self.spec.tool} on backend {self.spec.slug} has a bad config: {exc}") from None
        return Completion(text=text, tokens_in=0, tokens_out=0)

    def stream(
        self, *, messages: list[dict[str, str]], instructions: str, timeout: float
    ) -> Iterator[str | Completion]:
        # The answer exists all at once, so it is one delta; any error surfaces before it.
        completion = self.complete(messages=messages, instructions=instructions, timeout=timeout)
        yield completion.text
        yield completion
