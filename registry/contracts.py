"""The vocabulary of capability contracts, and validation of its parts.

Shared by the models, the policy file and the router, so a rule means the same thing wherever
it is written. Each validator returns a list of human-readable problems (empty when valid),
so callers can attach them to a form field or a policy file key.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

# The failure classes an attempt can end in (DESIGN.md, "The life of a request").
ERROR_CLASSES: tuple[str, ...] = (
    "timeout",
    "connection",
    "rate_limited",
    "server_error",
    "auth",
    "bad_response",
    "context_length",
    "content_refused",
    "verification_failed",
    "budget",
)
DEFAULT_FALLBACK_ON: list[str] = ["timeout", "connection", "rate_limited", "server_error"]

VERIFY_KINDS: dict[str, set[str]] = {
    "non_empty": set(),
    "one_of": {"values"},
    "regex": {"pattern"},
    "json_schema": {"schema"},
    "max_chars": {"limit"},
}
DEFAULT_VERIFY: dict[str, Any] = {"kind": "non_empty"}


def default_fallback_on() -> list[str]:
    return list(DEFAULT_FALLBACK_ON)


def default_verify() -> dict[str, Any]:
    return dict(DEFAULT_VERIFY)

# Deterministic tools and the config keys each accepts: name -> (required, optional).
TOOL_CONFIG_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "keyword_classifier": ({"labels"}, {"default", "case_sensitive"}),
    "regex_extract": ({"pattern"}, {"group", "join", "flags"}),
    "template": ({"template"}, set()),
}
TEMPLATE_FIELDS = ("input", "input_chars", "first_line", "words")

SECRET_REF_RE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)$")
BASE_URL_RE = re.compile(r"^https?://[^\s/?#@]+(:\d{1,5})?(/[^\s?#]*)?$", re.IGNORECASE)


def validate_fallback_on(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["must be a list of error classes"]
    problems = []
    for item in value:
        if item not in ERROR_CLASSES:
            problems.append(f"unknown error class {item!r}; known: {', '.join(ERROR_CLASSES)}")
    if len(set(map(str, value))) != len(value):
        problems.append("lists an error class twice")
    return problems


def validate_verify_rule(rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return ["must be a table with a kind"]
    kind = rule.get("kind")
    if kind not in VERIFY_KINDS:
        return [f"unknown verification kind {kind!r}; known: {', '.join(VERIFY_KINDS)}"]
    expected = VERIFY_KINDS[kind]
    problems = []
    for key in sorted(set(rule) - expected - {"kind"}):
        problems.append(f"{kind} takes no key {key!r}")
    for key in sorted(expected - set(rule)):
        problems.append(f"{kind} needs {key!r}")
    if problems:
        return problems
    if kind == "one_of":
        values = rule["values"]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            problems.append("one_of values must be a non-empty list of strings")
    elif kind == "regex":
        pattern = rule["pattern"]
        if not isinstance(pattern, str) or not pattern:
            problems.append("regex pattern must be a non-empty string")
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"invalid regex: {exc}")
    elif kind == "json_schema":
        schema = rule["schema"]
        if not isinstance(schema, dict):
            problems.append("json_schema schema must be a table (a JSON object)")
        else:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                problems.append(f"invalid JSON schema: {exc.message}")
    elif kind == "max_chars":
        limit = rule["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append("max_chars limit must be a whole number of at least 1")
    return problems


def validate_secret_ref(ref: str) -> list[str]:
    if ref == "":
        return []
    if not SECRET_REF_RE.match(ref):
        return ["must be env:NAME or file:/absolute/path (a reference, never the secret itself)"]
    return []


def validate_base_url(url: str) -> list[str]:
    """http(s)://host[:port][/path]. Unlike Django's URLField, any host name is accepted (gpu-box,
    ollama, a container name), since local runtimes rarely have a dotted name."""
    if url == "":
        return []
    if not BASE_URL_RE.match(url):
        return ["must be an http:// or https:// URL with a host, e.g. http://gpu-box:11434 (no query or credentials)"]
    return []


def validate_tool_config(tool: str, config: Any) -> list[str]:
    if tool not in TOOL_CONFIG_KEYS:
        return [f"unknown tool {tool!r}; known: {', '.join(TOOL_CONFIG_KEYS)}"]
    if not isinstance(config, dict):
        return ["config must be a table (a JSON object)"]
    required, optional = TOOL_CONFIG_KEYS[tool]
    problems = [f"{tool} config needs {key!r}" for key in sorted(required - set(config))]
    problems += [f"{tool} config takes no key {key!r}" for key in sorted(set(config) - required - optional)]
    if problems:
        return problems
    if tool == "keyword_classifier":
        labels = config["labels"]
        if not isinstance(labels, dict) or not labels:
            problems.append("labels must be a table of label = [keywords]")
        else:
            for label, words in labels.items():
                if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
                    problems.append(f"labels.{label} must be a non-empty list of keywords")
        if "default" in config and not isinstance(config["default"], str):
            problems.append("default must be a string")
        if "case_sensitive" in config and not isinstance(config["case_sensitive"], bool):
            problems.append("case_sensitive must be true or false")
    elif tool == "regex_extract":
        pattern = config["pattern"]
        compiled = None
        if not isinstance(pattern, str) or not pattern:
            problems.append("pattern must be a non-empty string")
        else:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                problems.append(f"invalid regex: {exc}")
        group = config.get("group", 0)
        if isinstance(group, bool) or not isinstance(group, (int, str)):
            problems.append("group must be a group number or name")
        elif compiled is not None:
            if isinstance(group, int) and not 0 <= group <= compiled.groups:
                problems.append(f"group {group} does not exist in the pattern ({compiled.groups} groups)")
            if isinstance(group, str) and group not in compiled.groupindex:
                problems.append(f"group {group!r} is not a named group of the pattern")
        if "join" in config and not isinstance(config["join"], str):
            problems.append("join must be a string")
        if "flags" in config:
            flags = config["flags"]
            if not isinstance(flags, list) or not set(flags) <= {"ignorecase", "multiline", "dotall"}:
                problems.append("flags must be a list of ignorecase, multiline, dotall")
    elif tool == "template":
        template = config["template"]
        if not isinstance(template, str) or not template:
            problems.append("template must be a non-empty string")
        else:
            # {{ and }} are literal braces; only a single-braced name is a field.
            for name in re.findall(r"\{\{|\}\}|\{([^{}]*)\}", template):
                if name and name not in TEMPLATE_FIELDS:
                    problems.append(f"template field {{{name}}} is unknown; known: {', '.join(TEMPLATE_FIELDS)}")
    return problems
