"""Deterministic tools: backends that answer without a model.

Each tool is a pure function `tool(*, text=..., config=...) -> str` of the user's text and the
backend's `config` (whose keys registry.contracts.TOOL_CONFIG_KEYS defines). Tools are fully
inspectable and fast, so they are the fallback of last resort: a config the contract rejects
raises `ToolConfigError` rather than guessing, and an answer the tool cannot give is "" so that
the capability's verification (and its fallback policy) decides what happens next.

Compiled regexes and parsed templates are cached by their source, so a call costs a few
microseconds after the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from registry.contracts import TEMPLATE_FIELDS, validate_tool_config

_CACHE_SIZE = 256


class ToolConfigError(ValueError):
    """A tool's config breaks its contract; the message names the problem, never the input."""


def _check_config(*, tool: str, config: Any) -> None:
    # The same validator the policy file and the forms use, so a config that imports is a config
    # that runs; it is re-checked here because rows can be edited behind the policy's back.
    problems = validate_tool_config(tool, config)
    if problems:
        raise ToolConfigError("; ".join(problems))


# keyword_classifier


@lru_cache(maxsize=_CACHE_SIZE)
def _label_patterns(
    labels: tuple[tuple[str, tuple[str, ...]], ...], case_sensitive: bool
) -> tuple[tuple[str, re.Pattern[str]], ...]:
    flags = 0 if case_sensitive else re.IGNORECASE
    compiled = []
    for label, keywords in labels:
        # Longest first, so a phrase ("shut down") wins over a keyword inside it ("down") and
        # counts once.
        alternatives = sorted({_keyword_regex(k) for k in keywords}, key=len, reverse=True)
        # Look-arounds rather than \b so keywords that start or end with punctuation ("c++",
        # "#urgent") still need a non-word character (or the edge of the text) on each side.
        pattern = r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)"
        compiled.append((label, re.compile(pattern, flags)))
    return tuple(compiled)


def _keyword_regex(keyword: str) -> str:
    # Any run of whitespace inside a phrase matches any other, so "on  call" still counts.
    return r"\s+".join(re.escape(part) for part in keyword.split())


def keyword_classifier(*, text: str, config: dict[str, Any]) -> str:
    """The label whose keywords occur most often as whole words or phrases in `text`.

    Ties go to the label listed first in the config; no hit at all gives `default` ("other").
    """
    _check_config(tool="keyword_classifier", config=config)
    labels = tuple((str(label), tuple(words)) for label, words in config["labels"].items())
    patterns = _label_patterns(labels, bool(config.get("case_sensitive", False)))
    best_label, best_hits = "", 0
    for label, pattern in patterns:
        hits = sum(1 for _ in pattern.finditer(text))
        if hits > best_hits:  # strictly more: an equal count keeps the earlier label
            best_label, best_hits = label, hits
    if best_hits == 0:
        return config.get("default", "other")
    return best_label


# regex_extract

_FLAGS = {"ignorecase": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL}


@lru_cache(maxsize=_CACHE_SIZE)
def _compiled(pattern: str, flags: tuple[str, ...]) -> re.Pattern[str]:
    value = 0
    for name in flags:
        value |= _FLAGS[name]
    return re.compile(pattern, value)


def regex_extract(*, text: str, config: dict[str, Any]) -> str:
    """Every match's `group` (number or name, default 0: the whole match) joined by `join`.

    Matches whose group is empty or did not take part add nothing, so a pattern that finds
    nothing answers "" and a `non_empty` contract fails it rather than accepting a blank answer.
    """
    _check_config(tool="regex_extract", config=config)
    pattern = _compiled(config["pattern"], tuple(sorted(set(config.get("flags", [])))))
    group = config.get("group", 0)
    found = []
    for match in pattern.finditer(text):
        value = match.group(group)
        if value:
            found.append(value)
    return config.get("join", "\n").join(found)


# template

# {{ and }} are literal braces; {name} is a field. A lone brace is kept as it is: it cannot be
# mistaken for a field, and failing a live call over punctuation would help nobody.
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_template(template: str) -> tuple[tuple[bool, str], ...]:
    """The template as (is_field, literal text or field name) parts.

    Deliberately not str.format: a field is one of TEMPLATE_FIELDS exactly, so a template can
    never reach attributes or items ("{input.__class__}", "{input[0]}") of what it formats.
    """
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    position = 0
    for token in _TEMPLATE_TOKEN.finditer(template):
        literal.append(template[position : token.start()])
        position = token.end()
        if token.group(0) in ("{{", "}}"):
            literal.append(token.group(0)[0])
            continue
        name = token.group(1)
        if name not in TEMPLATE_FIELDS:
            raise ToolConfigError(f"template field {{{name}}} is unknown; known: {', '.join(TEMPLATE_FIELDS)}")
        parts.append((False, "".join(literal)))
        literal = []
        parts.append((True, name))
    literal.append(template[position:])
    parts.append((False, "".join(literal)))
    return tuple(part for part in parts if part[0] or part[1])


def template_fields(*, text: str) -> dict[str, str]:
    """The values a template may use, all computed from the input alone."""
    stripped = text.strip()
    return {
        "input": text,
        "input_chars": str(len(text)),
        "first_line": stripped.splitlines()[0].strip() if stripped else "",
        "words": str(len(text.split())),
    }


def template(*, text: str, config: dict[str, Any]) -> str:
    """A fixed answer built from `text`: {input}, {input_chars}, {first_line} (the first line
    of the stripped input) and {words} (how many whitespace-separated words it has)."""
    _check_config(tool="template", config=config)
    parts = _parse_template(config["template"])
    fields = template_fields(text=text) if any(is_field for is_field, _ in parts) else {}
    return "".join(fields[value] if is_field else value for is_field, value in parts)


TOOLS: dict[str, Callable[..., str]] = {
    "keyword_classifier": keyword_classifier,
    "regex_extract": regex_extract,
    "template": template,
}
