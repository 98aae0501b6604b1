from __future__ import annotations

from typing import Any

import pytest

from registry.contracts import TEMPLATE_FIELDS, TOOL_CONFIG_KEYS
from routing.tools import TOOLS, ToolConfigError, keyword_classifier, regex_extract, template

TRIAGE: dict[str, Any] = {
    "labels": {"urgent": ["outage", "down", "shut down"], "billing": ["invoice", "refund"]},
    "default": "other",
}


def test_it_offers_exactly_the_tools_the_contract_knows() -> None:
    assert set(TOOLS) == set(TOOL_CONFIG_KEYS)
    assert all(callable(tool) for tool in TOOLS.values())


# keyword_classifier


def test_it_picks_the_label_with_the_most_keyword_hits() -> None:
    text = "The invoice is wrong, I want a refund, also the site was down"
    assert keyword_classifier(text=text, config=TRIAGE) == "billing"


def test_it_breaks_ties_by_the_order_labels_appear_in() -> None:
    assert keyword_classifier(text="outage and a refund", config=TRIAGE) == "urgent"
    reversed_labels = {"labels": {"billing": ["refund"], "urgent": ["outage"]}}
    assert keyword_classifier(text="outage and a refund", config=reversed_labels) == "billing"


def test_it_answers_the_default_when_nothing_matches() -> None:
    assert keyword_classifier(text="hello there", config=TRIAGE) == "other"
    assert keyword_classifier(text="hello there", config={"labels": {"urgent": ["down"]}}) == "other"
    assert keyword_classifier(text="hello", config={"labels": {"urgent": ["down"]}, "default": "none"}) == "none"


def test_it_matches_whole_words_only() -> None:
    assert keyword_classifier(text="please download the invoices", config=TRIAGE) == "other"
    assert keyword_classifier(text="down!", config=TRIAGE) == "urgent"
    assert keyword_classifier(text="(invoice)", config=TRIAGE) == "billing"


def test_it_matches_phrases_across_any_whitespace_and_counts_them_once() -> None:
    config = {"labels": {"billing": ["refund", "invoice"], "urgent": ["shut down", "down"]}}
    # "shut down" is one hit, not two ("down" inside it), so the tie goes to billing...
    assert keyword_classifier(text="refund: they shut\n down the site", config=config) == "billing"
    # ...and two separate hits beat one.
    assert keyword_classifier(text="refund: they shut  down, still down", config=config) == "urgent"


def test_it_ignores_case_unless_told_otherwise() -> None:
    assert keyword_classifier(text="OUTAGE in EU", config=TRIAGE) == "urgent"
    sensitive = {**TRIAGE, "case_sensitive": True}
    assert keyword_classifier(text="OUTAGE in EU", config=sensitive) == "other"
    assert keyword_classifier(text="outage in EU", config=sensitive) == "urgent"


def test_it_matches_keywords_that_end_in_punctuation() -> None:
    config = {"labels": {"cpp": ["c++"], "c": ["c"]}}
    assert keyword_classifier(text="I write c++ daily", config=config) == "cpp"
    assert keyword_classifier(text="I write c daily", config=config) == "c"


def test_it_rejects_a_config_the_contract_rejects() -> None:
    with pytest.raises(ToolConfigError, match="labels"):
        keyword_classifier(text="x", config={"labels": {}})
    with pytest.raises(ToolConfigError, match="takes no key 'colour'"):
        keyword_classifier(text="x", config={**TRIAGE, "colour": "red"})


# regex_extract


def test_it_extracts_every_whole_match_joined_by_newlines() -> None:
    config = {"pattern": r"FOS-\d+"}
    assert regex_extract(text="see FOS-12 and FOS-7, not FOS-x", config=config) == "FOS-12\nFOS-7"


def test_it_extracts_a_numbered_or_named_group_with_a_custom_join() -> None:
    text = "order=A1 order=B22 order=C3"
    assert regex_extract(text=text, config={"pattern": r"order=(\w+)", "group": 1, "join": ","}) == "A1,B22,C3"
    named = {"pattern": r"order=(?P<id>[A-Z])(?P<n>\d+)", "group": "n", "join": "+"}
    assert regex_extract(text=text, config=named) == "1+22+3"


def test_it_answers_empty_when_nothing_matches() -> None:
    assert regex_extract(text="nothing here", config={"pattern": r"\d+"}) == ""


def test_it_skips_groups_that_did_not_take_part() -> None:
    config = {"pattern": r"(\d+)|[a-z]+", "group": 1}
    assert regex_extract(text="abc 12 def 3", config=config) == "12\n3"


def test_it_applies_flags() -> None:
    text = "Total: 3\ntotal: 4\nTOTAL:\n5"
    assert regex_extract(text=text, config={"pattern": r"total: (\d)", "group": 1}) == "4"
    ignorecase = {"pattern": r"total: (\d)", "group": 1, "flags": ["ignorecase"]}
    assert regex_extract(text=text, config=ignorecase) == "3\n4"
    multiline = {"pattern": r"^\w+", "flags": ["multiline"]}
    assert regex_extract(text=text, config=multiline) == "Total\ntotal\nTOTAL\n5"
    assert regex_extract(text=text, config={"pattern": r"TOTAL:.(\d)", "group": 1}) == ""
    dotall = {"pattern": r"TOTAL:.(\d)", "group": 1, "flags": ["dotall"]}
    assert regex_extract(text=text, config=dotall) == "5"


def test_it_rejects_a_bad_pattern_or_group() -> None:
    with pytest.raises(ToolConfigError, match="invalid regex"):
        regex_extract(text="x", config={"pattern": "("})
    with pytest.raises(ToolConfigError, match="group 2 does not exist"):
        regex_extract(text="x", config={"pattern": r"(x)", "group": 2})
    with pytest.raises(ToolConfigError, match="flags"):
        regex_extract(text="x", config={"pattern": r"x", "flags": ["verbose"]})


# template


def test_it_fills_every_template_field_from_the_input() -> None:
    config = {"template": "{input_chars} chars, {words} words, first: {first_line} | {input}"}
    text = "\n  Site is down  \nsince noon"
    assert template(text=text, config=config) == f"{len(text)} chars, 5 words, first: Site is down | {text}"
    assert set(TEMPLATE_FIELDS) == {"input", "input_chars", "first_line", "words"}


def test_it_fills_fields_of_an_empty_input() -> None:
    config = {"template": "[{first_line}] {words} {input_chars}"}
    assert template(text="", config=config) == "[] 0 0"


def test_it_keeps_doubled_braces_as_literal_braces() -> None:
    config = {"template": '{{"label": "urgent", "summary": "{first_line}"}}'}
    assert template(text="disk full", config=config) == '{"label": "urgent", "summary": "disk full"}'
    assert template(text="x", config={"template": "{{ {input} }}"}) == "{ x }"


def test_it_never_reaches_into_attributes_or_items() -> None:
    for bad in ("{input.__class__}", "{input[0]}", "{0}", "{}", "{input!r}"):
        with pytest.raises(ToolConfigError, match="unknown"):
            template(text="secret", config={"template": bad})


def test_it_does_not_format_braces_that_arrive_in_the_input() -> None:
    assert template(text="{input_chars} {{", config={"template": "<{input}>"}) == "<{input_chars} {{>"
