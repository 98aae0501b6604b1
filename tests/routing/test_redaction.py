from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from routing.redaction import ELLIPSIS, KEYWORD_STEMS, KINDS, Redacted, marker, preview, redact


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


JWT = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': 'MARKERjwt', 'exp': 1900000000})}.c2lnbmF0dXJlTUFSS0VSc2lnbmF0dXJl"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAMARKERpemQ2Yq0vJ3mJ9x1B2c3d4e5f6g7h8i9j0k1l2m3n4\n"
    "o5p6q7r8s9t0u1v2w3x4y5z6A7B8C9D0E1F2G3H4I5J6K7L8M9N0O1P2Q3R4S5T6\n"
    "-----END RSA PRIVATE KEY-----"
)

# Each kind with recognisable values; "MARKER" sits inside every secret that can hold it.
SEEDS: dict[str, list[str]] = {
    "private_key": [PEM],
    "jwt": [JWT],
    "anthropic_key": ["sk-ant-api03-MARKERant0123456789abcdefghijklmnopqrstuvwxyz-AAAA"],
    "openai_key": ["sk-proj-MARKERoai0123456789abcdefghijklmnopqrstuvwxyzABCDEF", "sk-MARKERlegacy0123456789abcdefghij"],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE", "ASIAMARKER0123456789"],
    "github_token": ["ghp_MARKER" + "a1B2c3D4e5" * 3 + "Zy", "github_pat_11MARKER0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH"],
    "google_api_key": ["AIzaSyMARKER-0123456789abcdefghijklmnop"],
    "slack_token": ["xoxb-123456789012-MARKERslack0123456789"],
    "stripe_key": ["sk_live_MARKERstripe0123456789abcd", "rk_live_MARKERrestricted0123456789ab"],
    "email": ["jane.doe+MARKER@example.com", "ops@sub.example.co.uk"],
    "phone": ["+44 20 7946 0958", "(415) 555-2671", "+1-415-555-2671", "020 7946 0958", "06 12 34 56 78"],
    "card_number": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
    "ipv4": ["192.168.10.20", "8.8.4.4"],
    "ipv6": ["2001:db8::1", "fe80:0:0:0:202:b3ff:fe1e:8329"],
}
LABELLED = [
    # (text, the secret inside it, the kind it counts as)
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYMARKERKEY1", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYMARKERKEY1", "aws_secret_key"),
    ("Authorization: Bearer MARKERbearer0123456789", "MARKERbearer0123456789", "bearer_token"),
    ('"headers": {"authorization": "Basic dXNlcjpNQVJLRVI="}', "dXNlcjpNQVJLRVI=", "auth_header"),
    ("password=MARKERhunter2", "MARKERhunter2", "labelled_secret"),
    ("DB_PASSWORD: 'MARKER correct horse'", "MARKER correct horse", "labelled_secret"),
    ('{"api_key": "MARKERkey123"}', "MARKERkey123", "labelled_secret"),
    ("client-secret=MARKERcs", "MARKERcs", "labelled_secret"),
    ("postgres://app:MARKERdbpass@db.internal:5432/app", "app:MARKERdbpass", "url_credentials"),
]
ORDINARY = (
    "Released on 2026-11-28 (at 2026-11-28T10:00:00Z) with Python 3.11.7 and Django 5.2.19.\n"
    "We retried 3 times across 42 items; p95 was 1,234.56 ms, port 8080, at 12:30:45.\n"
    "Ticket FOS-1 moved to step 10-20 of 2026; order #12345, build 20261128, id 550e8400-e29b-41d4-a716-446655440000.\n"
    "The bearer of this note asks for the secret sauce and the key points, not a password reset.\n"
    "Costs: $0.004 per call; token budget 4096; max_tokens: 512; see docs/routing.md#fallbacks."
)


def seeded_text() -> str:
    lines = [f"{kind}: {value} ;" for kind, values in SEEDS.items() for value in values]
    lines += [text for text, _, _ in LABELLED]
    return "Hello,\n" + "\n".join(lines) + "\nThanks"


@pytest.mark.parametrize("deep", [False, True])
def test_it_redacts_every_seeded_secret_and_personal_datum(deep: bool) -> None:
    result = redact(seeded_text(), deep=deep)
    assert "MARKER" not in result.text
    for values in SEEDS.values():
        for value in values:
            assert value not in result.text
    for _, secret, _ in LABELLED:
        assert secret not in result.text
    assert result.text.startswith("Hello,\n") and result.text.endswith("\nThanks")


def test_it_counts_each_finding_once_under_its_most_specific_kind() -> None:
    result = redact(seeded_text())
    expected = {kind: len(values) for kind, values in SEEDS.items()}
    for _, _, kind in LABELLED:
        expected[kind] = expected.get(kind, 0) + 1
    assert result.counts == expected


@pytest.mark.parametrize(("kind", "value"), [(kind, value) for kind, values in SEEDS.items() for value in values])
def test_it_replaces_a_finding_with_its_marker(kind: str, value: str) -> None:
    assert redact(f"see {value} now") == Redacted(text=f"see {marker(kind)} now", counts={kind: 1})


@pytest.mark.parametrize(("text", "secret", "kind"), LABELLED)
def test_it_keeps_the_label_and_hides_the_labelled_value(text: str, secret: str, kind: str) -> None:
    result = redact(text)
    assert result.text == text.replace(secret, marker(kind))
    assert result.counts == {kind: 1}


def test_it_seeds_every_kind_it_knows() -> None:
    assert set(SEEDS) | {kind for _, _, kind in LABELLED} == set(KINDS)


def test_it_merges_a_finding_that_straddles_another_so_no_fragment_shows() -> None:
    result = redact("password=AKIAIOSFODNN7EXAMPLEtail end")
    assert result == Redacted(text=f"password={marker('aws_access_key')} end", counts={"aws_access_key": 1})


def test_it_redacts_thousands_of_findings_quickly() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(5000))
    assert redact(text).counts == {"email": 5000}


def test_it_counts_an_anthropic_key_as_anthropic_not_openai() -> None:
    result = redact("a sk-ant-api03-" + "x" * 40 + " and sk-" + "y" * 40)
    assert result.counts == {"anthropic_key": 1, "openai_key": 1}


def test_it_counts_a_provider_key_once_even_when_labelled() -> None:
    key = "sk-proj-" + "k1" * 20
    assert redact(f"api_key: {key}").counts == {"openai_key": 1}
    assert redact(f"Authorization: Bearer {JWT}").counts == {"jwt": 1}
    assert redact(f"Authorization: Bearer {JWT}").text == f"Authorization: Bearer {marker('jwt')}"


@pytest.mark.parametrize("deep", [False, True])
def test_it_leaves_ordinary_text_alone(deep: bool) -> None:
    assert redact(ORDINARY, deep=deep) == Redacted(text=ORDINARY, counts={})


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails the Luhn check
        "1700000000000",  # a millisecond timestamp
        "999.10.20.30",  # not an address
        "std::vector<a::b>",
        "12345678",  # too short for a phone
        "call 555-2671",  # too short for a phone
        "v1.2.3.4.5",
        "2026-11-28 10:30",
    ],
)
def test_it_leaves_lookalikes_alone(text: str) -> None:
    assert redact(text).text == text


def test_it_redacts_a_private_key_cut_off_before_its_end() -> None:
    text = "upstream said: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEMARKER"
    assert redact(text).text == f"upstream said: {marker('private_key')}"


def test_it_keeps_a_phone_apart_from_a_number_after_it() -> None:
    assert redact("call +44 20 7946 0958 2026 edition").text == f"call {marker('phone')} 2026 edition"


def test_it_finds_more_with_detect_secrets_when_deep() -> None:
    text = "db_pass = MARKERvalue9\ntoken AC" + "0123456789abcdef" * 2 + "\nblob q8Zr2LmX0vTn7Kp4Wb9sYc1HdJf6Ge3Ua5Ri"
    shallow = redact(text)
    deep = redact(text, deep=True)
    assert "MARKERvalue9" in shallow.text
    assert "MARKER" not in deep.text
    assert "AC0123456789abcdef" not in deep.text and "q8Zr2LmX0vTn7Kp4Wb9sYc1HdJf6Ge3Ua5Ri" not in deep.text
    assert deep.counts == {"secret_keyword": 1, "twilio_api_key": 1, "base64_high_entropy_string": 1}


def test_it_never_touches_detect_secrets_global_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import detect_secrets.plugins.base
    import detect_secrets.settings

    def forbidden() -> None:
        raise AssertionError("detect-secrets settings were read")

    monkeypatch.setattr(detect_secrets.settings, "get_settings", forbidden)
    monkeypatch.setattr(detect_secrets.plugins.base, "get_settings", forbidden)
    assert "MARKER" not in redact(seeded_text() + "\npassword: MARKERx1", deep=True).text


def test_it_knows_a_stem_of_every_detect_secrets_keyword() -> None:
    from detect_secrets.plugins.keyword import DENYLIST

    for entry in DENYLIST:
        assert any(stem in entry.replace("_?", "") for stem in KEYWORD_STEMS), entry


def test_it_previews_short_text_whole_and_redacted() -> None:
    assert preview(text="mail jane@example.com", limit=100) == f"mail {marker('email')}"
    assert preview(text="hello", limit=5) == "hello"


def test_it_truncates_a_preview_with_an_ellipsis() -> None:
    assert preview(text="the invoice is wrong and I want a refund", limit=12) == "the invoice" + ELLIPSIS


def test_it_never_cuts_a_secret_or_a_marker_in_half() -> None:
    key = "sk-proj-MARKER" + "abc123" * 8
    text = f"here is {key} and jane.doe@example.com, thanks"
    for limit in range(0, len(text) + 5):
        shown = preview(text=text, limit=limit)
        assert len(shown) <= limit
        assert "MARKER" not in shown and "jane" not in shown and "example" not in shown
        assert "sk-" not in shown
        # Any marker shown is shown whole.
        assert all(m.group(0) in (marker("openai_key"), marker("email")) for m in re.finditer(r"\[redacted:[^\]]*\]?", shown))
        assert not shown.rstrip(ELLIPSIS).endswith(("[", "[redacted", "[redacted:"))


def test_it_is_fast_for_short_texts() -> None:
    import time

    text = ("Hi, my order 12345 arrived late and the invoice is wrong. Refund to jane@example.com "
            "or call +1 415 555 2671. Thanks! ") * 3  # fmt: skip
    redact(text)
    started = time.perf_counter()
    for _ in range(200):
        redact(text)
    per_call_ms = (time.perf_counter() - started) / 200 * 1000
    # Generous, so a busy machine does not fail it; typical is well under 0.2 ms.
    assert per_call_ms < 2
