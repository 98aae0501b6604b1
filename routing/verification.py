"""Checking an answer against its capability's verification rule.

`verify` never raises: a rule that cannot be applied fails the answer, with a detail that says
the rule is at fault. Details end up in route logs, API answers and proof pages, while the
answer may be private, so a detail describes the answer only by its length and positions and
otherwise quotes the contract (expected values, the pattern, schema keywords), never the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from registry.contracts import validate_verify_rule

_CACHE_SIZE = 256
# How much of the contract a detail quotes: enough to recognise it, short enough for a log line.
_QUOTE_CHARS = 80
# A single fenced block around the whole answer, as chat models like to send JSON.
_FENCED = re.compile(r"\A```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```\Z", re.DOTALL)


@dataclass(frozen=True)
class VerificationResult:
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(*, rule: dict[str, Any], output: str) -> VerificationResult:
    try:
        key = json.dumps(rule, sort_keys=True)
    except (TypeError, ValueError):
        return _invalid(["is not plain JSON data"])
    problems = _rule_problems(key)
    if problems:
        return _invalid(list(problems))
    kind = rule["kind"]
    if kind == "non_empty":
        return _non_empty(output)
    if kind == "one_of":
        return _one_of(output, rule["values"])
    if kind == "regex":
        return _regex(output, rule["pattern"])
    if kind == "json_schema":
        return _json_schema(output, json.dumps(rule["schema"], sort_keys=True))
    return _max_chars(output, rule["limit"])


@lru_cache(maxsize=_CACHE_SIZE)
def _rule_problems(key: str) -> tuple[str, ...]:
    # The contract's own validator, so a rule means the same here as in the policy file; cached
    # because it compiles patterns and checks schemas, which is too slow to repeat per call.
    return tuple(validate_verify_rule(json.loads(key)))


def _invalid(problems: list[str]) -> VerificationResult:
    return VerificationResult(False, _clip("invalid verification rule: " + "; ".join(problems), 200))


def _clip(text: str, limit: int = _QUOTE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _non_empty(output: str) -> VerificationResult:
    if output.strip():
        return VerificationResult(True, f"non-empty ({len(output)} chars)")
    if output:
        return VerificationResult(False, f"answer is only whitespace ({len(output)} chars)")
    return VerificationResult(False, "answer is empty")


def _one_of(output: str, values: list[str]) -> VerificationResult:
    if output.strip() in values:
        return VerificationResult(True, f"one of the {len(values)} expected values")
    expected = _clip(", ".join(values))
    return VerificationResult(False, f"answer ({len(output.strip())} chars) is not one of: {expected}")


@lru_cache(maxsize=_CACHE_SIZE)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regex(output: str, pattern: str) -> VerificationResult:
    stripped = output.strip()
    if _pattern(pattern).fullmatch(stripped):
        return VerificationResult(True, "matches the whole pattern")
    return VerificationResult(False, f"answer ({len(stripped)} chars) does not wholly match /{_clip(pattern, 60)}/")


@lru_cache(maxsize=_CACHE_SIZE)
def _validator(schema_key: str) -> tuple[jsonschema.Draft202012Validator, frozenset[str]]:
    schema = json.loads(schema_key)
    return jsonschema.Draft202012Validator(schema), frozenset(_declared_names(schema))


def _declared_names(schema: Any) -> set[str]:
    """Property names the schema itself declares: these may be quoted in a detail, while any
    other key in an error's path came from the answer and may not."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for keyword in ("properties", "dependentRequired", "dependentSchemas"):
            if isinstance(schema.get(keyword), dict):
                names.update(str(k) for k in schema[keyword])
        if isinstance(schema.get("required"), list):
            names.update(str(k) for k in schema["required"])
        for value in schema.values():
            names |= _declared_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= _declared_names(item)
    return names


def _json_schema(output: str, schema_key: str) -> VerificationResult:
    body = output.strip()
    fenced = _FENCED.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        # The decoder's message is generic ("Expecting value"); its position is all we add.
        return VerificationResult(False, f"answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    validator, declared = _validator(schema_key)
    try:
        errors = list(validator.iter_errors(document))
    except Exception as exc:  # e.g. a $ref that resolves nowhere: the rule's fault, not the answer's
        return _invalid([f"the JSON schema cannot be applied ({type(exc).__name__})"])
    if not errors:
        return VerificationResult(True, "valid against the JSON schema")
    error = best_match(errors)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return VerificationResult(False, f"{_path(error, declared)}: {_describe(error, declared)}{more}")


def _path(error: ValidationError, declared: frozenset[str]) -> str:
    path = "$"
    for part in error.absolute_path:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if part in declared else ".<key>"
    return path


def _describe(error: ValidationError, declared: frozenset[str]) -> str:
    """jsonschema's own messages quote the offending value, so this says what the schema wanted
    instead, from the failed keyword and the schema's side of it."""
    keyword, wanted = error.validator, error.validator_value
    if keyword == "required" and isinstance(error.instance, dict):
        missing = [name for name in wanted if name not in error.instance]
        return f"missing required {', '.join(missing)}"
    if keyword == "type":
        return f"expected type {wanted if isinstance(wanted, str) else ' or '.join(wanted)}"
    if keyword in ("enum", "const"):
        return f"expected {keyword} {_clip(json.dumps(wanted))}"
    if keyword == "additionalProperties" and wanted is False:
        return "has properties the schema does not allow"
    if isinstance(wanted, (dict, list)) or keyword in ("pattern", "format"):
        return f"fails {keyword} {_clip(json.dumps(wanted), 60)}"
    return f"fails {keyword} {json.dumps(wanted)}"


def _max_chars(output: str, limit: int) -> VerificationResult:
    if len(output) <= limit:
        return VerificationResult(True, f"{len(output)} chars, within {limit}")
    return VerificationResult(False, f"answer has {len(output)} chars, more than {limit}")
