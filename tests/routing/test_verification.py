from __future__ import annotations

import json
from typing import Any

import pytest

from routing.verification import VerificationResult, verify

# Stands for private text in an answer: no detail may ever repeat it.
MARKER = "ZQXMARKER7731"

LABELS = {"kind": "one_of", "values": ["urgent", "billing", "other"]}
TICKET = {
    "kind": "json_schema",
    "schema": {
        "type": "object",
        "properties": {
            "label": {"enum": ["urgent", "billing", "other"]},
            "priority": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["label", "priority"],
        "additionalProperties": False,
    },
}


def test_it_gives_a_frozen_result_that_turns_into_a_dict() -> None:
    result = verify(rule={"kind": "non_empty"}, output="yes")
    assert result.as_dict() == {"passed": True, "detail": result.detail}
    with pytest.raises(AttributeError):
        result.passed = False  # type: ignore[misc]


def test_it_checks_non_empty() -> None:
    assert verify(rule={"kind": "non_empty"}, output=" ok ").passed is True
    assert verify(rule={"kind": "non_empty"}, output="").as_dict() == {"passed": False, "detail": "answer is empty"}
    blank = verify(rule={"kind": "non_empty"}, output=" \n\t")
    assert blank.passed is False and "whitespace" in blank.detail


def test_it_checks_one_of_exactly_after_stripping() -> None:
    assert verify(rule=LABELS, output="billing\n").passed is True
    assert verify(rule=LABELS, output="Billing").passed is False
    assert verify(rule=LABELS, output="billing.").passed is False
    failed = verify(rule=LABELS, output=f"urgent because {MARKER}")
    assert failed.passed is False
    assert "urgent, billing, other" in failed.detail


def test_it_truncates_a_long_list_of_expected_values() -> None:
    rule = {"kind": "one_of", "values": [f"value-{i}" for i in range(100)]}
    detail = verify(rule=rule, output="nope").detail
    assert "value-0, value-1" in detail and "value-99" not in detail
    assert len(detail) < 150


def test_it_checks_a_regex_against_the_whole_stripped_answer() -> None:
    rule = {"kind": "regex", "pattern": r"FOS-\d+"}
    assert verify(rule=rule, output="  FOS-12\n").passed is True
    assert verify(rule=rule, output="see FOS-12").passed is False
    assert verify(rule=rule, output="FOS-12 done").passed is False
    failed = verify(rule=rule, output=f"{MARKER} FOS-1")
    assert "FOS-" in failed.detail and "chars" in failed.detail


def test_it_checks_json_against_a_schema() -> None:
    result = verify(rule=TICKET, output='{"label": "urgent", "priority": 2, "tags": ["db"]}')
    assert result.passed is True


def test_it_accepts_json_in_a_single_fenced_block() -> None:
    assert verify(rule=TICKET, output='```json\n{"label": "other", "priority": 1}\n```').passed is True
    assert verify(rule=TICKET, output='\n```\n{"label": "other", "priority": 1}\n```\n').passed is True
    assert verify(rule=TICKET, output='Here:\n```json\n{"label": "other", "priority": 1}\n```').passed is False


def test_it_fails_invalid_json_with_only_a_position() -> None:
    failed = verify(rule=TICKET, output=f'{{"label": {MARKER}}}')
    assert failed.passed is False
    assert failed.detail.startswith("answer is not valid JSON: ")
    assert "line 1 column 11" in failed.detail


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"label": "urgent"}, "$: missing required priority"),
        ({"label": "urgent", "priority": "high"}, "$.priority: expected type integer"),
        ({"label": "urgent", "priority": 0}, "$.priority: fails minimum 1"),
        ({"label": "later", "priority": 1}, '$.label: expected enum ["urgent", "billing", "other"]'),
        ({"label": "urgent", "priority": 1, "tags": ["a", 3]}, "$.tags[1]: expected type string"),
        ({"label": "urgent", "priority": 1, "extra": 1}, "$: has properties the schema does not allow"),
    ],
)
def test_it_names_the_first_schema_error_by_path(answer: dict[str, Any], expected: str) -> None:
    failed = verify(rule=TICKET, output=json.dumps(answer))
    assert failed.passed is False
    assert failed.detail == expected


def test_it_counts_further_schema_errors() -> None:
    failed = verify(rule=TICKET, output='{"priority": "x", "label": "?"}')
    assert failed.passed is False and "(and 1 more)" in failed.detail


def test_it_checks_max_chars_on_the_raw_answer() -> None:
    rule = {"kind": "max_chars", "limit": 5}
    assert verify(rule=rule, output="12345").passed is True
    failed = verify(rule=rule, output="12345 ")
    assert failed.as_dict() == {"passed": False, "detail": "answer has 6 chars, more than 5"}


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"kind": "vibes"}, "unknown verification kind 'vibes'"),
        ({"kind": "one_of"}, "one_of needs 'values'"),
        ({"kind": "one_of", "values": []}, "non-empty list of strings"),
        ({"kind": "regex", "pattern": "("}, "invalid regex"),
        ({"kind": "json_schema", "schema": {"type": "nonsense"}}, "invalid JSON schema"),
        ({"kind": "max_chars", "limit": 0}, "at least 1"),
        ({"kind": "non_empty", "extra": 1}, "takes no key 'extra'"),
        ("non_empty", "must be a table"),
        ({"kind": "one_of", "values": {"a", "b"}}, "not plain JSON data"),
    ],
)
def test_it_fails_an_invalid_rule_without_raising(rule: Any, problem: str) -> None:
    result = verify(rule=rule, output="anything")
    assert result.passed is False
    assert result.detail.startswith("invalid verification rule: ")
    assert problem in result.detail


def test_it_fails_a_schema_that_cannot_be_applied_without_raising() -> None:
    rule = {"kind": "json_schema", "schema": {"$ref": "https://example.invalid/schema.json"}}
    result = verify(rule=rule, output="{}")
    assert result.passed is False
    assert result.detail.startswith("invalid verification rule: the JSON schema cannot be applied")


@pytest.mark.parametrize(
    ("rule", "answer"),
    [
        ({"kind": "non_empty"}, f"  {MARKER}  "),
        (LABELS, MARKER),
        (LABELS, f"urgent {MARKER}"),
        ({"kind": "regex", "pattern": r"\d+"}, MARKER),
        (TICKET, f"not json {MARKER}"),
        (TICKET, f'{{"label": "{MARKER}", "priority": 1}}'),
        (TICKET, f'{{"label": "other", "priority": "{MARKER}"}}'),
        (TICKET, f'{{"label": "other", "priority": 1, "{MARKER}": 1}}'),
        (TICKET, f'{{"label": "other", "priority": 1, "tags": [{{"{MARKER}": 1}}]}}'),
        ({"kind": "json_schema", "schema": {"additionalProperties": {"type": "integer"}}}, f'{{"{MARKER}": "x"}}'),
        ({"kind": "json_schema", "schema": {"type": "string", "maxLength": 3}}, f'"{MARKER}"'),
        ({"kind": "json_schema", "schema": {"const": "a"}}, f'"{MARKER}"'),
        ({"kind": "max_chars", "limit": 3}, MARKER),
    ],
)
def test_it_never_repeats_the_answer_in_a_detail(rule: dict[str, Any], answer: str) -> None:
    result = verify(rule=rule, output=answer)
    assert "MARKER" not in result.detail
    assert "7731" not in result.detail


def test_it_hides_keys_the_schema_does_not_declare_in_a_path() -> None:
    rule = {"kind": "json_schema", "schema": {"additionalProperties": {"type": "integer"}}}
    assert verify(rule=rule, output=f'{{"{MARKER}": "x"}}').detail == "$.<key>: expected type integer"


def test_it_gives_the_same_answer_from_its_caches() -> None:
    rule = {"kind": "regex", "pattern": r"[a-z]+"}
    first = [verify(rule=rule, output=o) for o in ("abc", "ABC")]
    again = [verify(rule=dict(rule), output=o) for o in ("abc", "ABC")]
    assert first == again
    assert [r.passed for r in first] == [True, False]
    assert isinstance(first[0], VerificationResult)
