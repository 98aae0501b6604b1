"""Taking secrets and personal data out of free text before it is kept or shown.

Used for route logs' input previews and upstream error text, and later for public proof pages,
so it errs towards hiding too much: a date or a version number must survive, but a number that
could be a phone or a card does not have to.

Each pass finds spans in the original text rather than rewriting as it goes, so a marker is
never mistaken for data and no pattern sees another's leftovers:

1. `_PATTERNS`, in priority order: the most specific shapes first (private key blocks, JWTs,
   provider keys), then labelled secrets, then personal data. A span inside one already found
   is not counted again (so `sk-ant-...` is one anthropic_key, not also an openai_key), and a
   span that straddles one is merged with it, so no fragment escapes.
2. With `deep=True` (opt-in, several times slower): detect-secrets' plugins, line by line:
   their regexes, its keyword detector's config-style rules and its entropy test, used as plain
   Python objects: no files, no baseline, and its global settings are never read or changed.

Each span becomes `[redacted:<kind>]`; `Redacted.counts` says how many of each kind.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ELLIPSIS = "…"
MARKER_OPENING = "[redacted:"


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


def marker(kind: str) -> str:
    return f"{MARKER_OPENING}{kind}]"


def redact(text: str, *, deep: bool = False) -> Redacted:
    """`text` with every finding replaced by its marker.

    `deep` adds the detect-secrets pass. It costs four to six times the pattern pass (about
    0.2 ms against 0.04 ms for 300 characters), so it is meant for text on its way out of the
    system (proof pages, exports), not for every log line.
    """
    spans = _Spans()
    folded: str | None = None
    for pattern in _PATTERNS:
        subject = text
        if pattern.folded:
            if folded is None:
                folded = text.translate(_ASCII_FOLD)
            subject = folded
        if pattern.gate is not None and not pattern.gate(subject):
            continue
        for match in pattern.regex.finditer(subject):
            span = _span(match) if pattern.accept is None else pattern.accept(match)
            if span is not None and span[1] > span[0]:
                spans.add(span[0], span[1], pattern.kind)
    if deep:
        for start, end, kind in _detect_secrets_spans(text):
            spans.add(start, end, kind)
    if not spans.spans:
        return Redacted(text=text, counts={})
    out: list[str] = []
    counts: dict[str, int] = {}
    position = 0
    for start, end, kind in spans.spans:
        out.append(text[position:start])
        out.append(marker(kind))
        counts[kind] = counts.get(kind, 0) + 1
        position = end
    out.append(text[position:])
    return Redacted(text="".join(out), counts=counts)


def preview(*, text: str, limit: int, deep: bool = False) -> str:
    """At most `limit` characters of `text`, redacted before it is cut so that a cut can never
    expose half a secret; a cut that would split a marker drops the whole marker instead."""
    redacted = redact(text, deep=deep).text
    if len(redacted) <= limit:
        return redacted
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = limit - len(ELLIPSIS)
    # The last marker that starts before the cut, even when the cut falls inside "[redacted:".
    opening = redacted.rfind(MARKER_OPENING, 0, cut + len(MARKER_OPENING) - 1)
    if opening != -1 and redacted.find("]", opening) >= cut:
        cut = opening
    return redacted[:cut] + ELLIPSIS


class _Spans:
    """Disjoint spans kept sorted by start, so each addition costs a binary search, not a scan
    of every earlier finding (a long text can hold thousands).

    A new span inside an earlier (higher-priority) one adds nothing; one that straddles earlier
    spans swallows them and takes the kind of the leftmost, so each secret is counted once and
    no part of either is left showing.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.spans: list[tuple[int, int, str]] = []

    def add(self, start: int, end: int, kind: str) -> None:
        first = bisect.bisect_right(self.starts, start) - 1
        if first < 0 or self.spans[first][1] <= start:
            first += 1  # the span before does not reach this one
        last = first
        while last < len(self.spans) and self.spans[last][0] < end:
            last += 1
        overlapping = self.spans[first:last]
        if not overlapping:
            self.starts.insert(first, start)
            self.spans.insert(first, (start, end, kind))
            return
        if len(overlapping) == 1 and overlapping[0][0] <= start and end <= overlapping[0][1]:
            return
        merged = (min(start, overlapping[0][0]), max(end, overlapping[-1][1]), overlapping[0][2])
        self.starts[first:last] = [merged[0]]
        self.spans[first:last] = [merged]


# The pattern pass.


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    # Judges a candidate the regex cannot judge alone (a checksum, an address that parses):
    # the span to hide, or None to leave the candidate alone.
    accept: Callable[[re.Match[str]], tuple[int, int] | None] | None = None
    # A cheap test that the text could hold a match at all. Most texts hold no secrets, and a
    # substring test costs a fraction of a regex scan, so most patterns are skipped outright.
    gate: Callable[[str], bool] | None = None
    # Match against the text with A-Z lowered (the regex is written in lower case). Python's
    # case-insensitive alternations are ten times slower than plain ones, and folding ASCII
    # alone keeps every offset where it was, so spans still index the original text.
    folded: bool = False


_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _contains(*needles: str) -> Callable[[str], bool]:
    return lambda text: any(needle in text for needle in needles)


def _searches(pattern: str) -> Callable[[str], bool]:
    regex = re.compile(pattern)
    return lambda text: regex.search(text) is not None


def _span(match: re.Match[str]) -> tuple[int, int]:
    """The part of a match to hide: the first value group (v, v2, v3) that took part, else all
    of it, so that labels such as "password=" or "Bearer" stay readable."""
    for name in ("v", "v2", "v3"):
        if name in match.re.groupindex and match.group(name) is not None:
            return match.span(name)
    return match.span()


def _luhn(match: re.Match[str]) -> tuple[int, int] | None:
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return None
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return match.span() if total % 10 == 0 else None


_DIGIT_RUN = re.compile(r"\d+")


def _phone(match: re.Match[str]) -> tuple[int, int] | None:
    groups = [m.span() for m in _DIGIT_RUN.finditer(match.group(0))]
    digits = sum(end - start for start, end in groups)
    # The pattern takes every group it can, so a phone that runs into the next number ("call
    # +44 20 7946 0958 2026") is cut back to the longest plausible phone, not let through.
    while digits > 15 and len(groups) > 1:
        start, end = groups.pop()
        digits -= end - start
    if not 9 <= digits <= 15:
        return None
    return match.start(), match.start() + groups[-1][1]


def _ipv4(match: re.Match[str]) -> tuple[int, int] | None:
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return None
    return match.span()


def _ipv6(match: re.Match[str]) -> tuple[int, int] | None:
    candidate = match.group(0)
    # Short or digit-free forms ("::1", "a::b", "dead::beef") are as likely code ("std::") as
    # an address worth hiding.
    if sum(c not in ":." for c in candidate) < 3 or not any(c.isdigit() for c in candidate):
        return None
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return match.span()


_URL_USERINFO_TAIL = re.compile(r"://[^\s:/?#@\[\]]+:\Z")


def _email(match: re.Match[str]) -> tuple[int, int] | None:
    # In "scheme://user:pass@host" the "pass@host" is credentials (hidden as url_credentials),
    # not an address, and reading it as one would hide the host too.
    before = match.string[max(0, match.start() - 256) : match.start()]
    if _URL_USERINFO_TAIL.search(before):
        return None
    return match.span()


def _labelled_value(match: re.Match[str]) -> tuple[int, int] | None:
    start, end = _span(match)
    # "max_token: 4096" is a setting, not a secret: a bare "token" label needs a token-like value.
    if match.group("label") == "token":
        value = match.string[start:end]
        if len(value) < 8 or not any(c.isalpha() for c in value):
            return None
    return start, end


# Where a pattern must not start inside a longer token, its look-behind goes after the first
# character when that is easy ("\d(?<![\d.]\d)..."): a pattern that starts with a character
# (class) lets the regex engine skip to candidates instead of trying every position.
_B = r"(?<![A-Za-z0-9_-])"  # the start of a token: not glued to a longer word
_E = r"(?![A-Za-z0-9_-])"  # and its end

_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "private_key",
        # To the END line, or to the end of the text when it was cut off before one.
        re.compile(
            r"(?:-----)?BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?(?:-----)?"
            r"(?:.*?END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?(?:-----)?|.*\Z)"
            r"|PuTTY-User-Key-File-\d.*\Z",
            re.DOTALL,
        ),
        gate=_contains("PRIVATE KEY", "PuTTY-User-Key-File"),
    ),
    _Pattern(
        "jwt",
        re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*" + _E),
        gate=_contains("eyJ"),
    ),
    _Pattern("anthropic_key", re.compile(_B + r"sk-ant-[A-Za-z0-9_-]{20,}"), gate=_contains("sk-ant-")),
    _Pattern(
        "openai_key",
        re.compile(_B + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        gate=_contains("sk-"),
    ),
    _Pattern(
        "github_token",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})" + _E),
        gate=_contains("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Pattern(
        "stripe_key",
        re.compile(_B + r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}" + _E),
        gate=_contains("_live_", "_test_"),
    ),
    _Pattern(
        "slack_token",
        re.compile(_B + r"xox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9_/]+"),
        gate=_contains("xox", "hooks.slack.com"),
    ),
    _Pattern("google_api_key", re.compile(_B + r"AIza[0-9A-Za-z_-]{35,}" + _E), gate=_contains("AIza")),
    _Pattern(
        "aws_access_key",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])"),
        gate=_contains("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
    ),
    _Pattern(
        "aws_secret_key",
        re.compile(
            r"(?:aws_?secret(?:_?access)?_?key|secret_?access_?key)[\"'\]]{0,2}[ \t]*(?:=>|=|:)[ \t]*[\"']?"
            r"(?P<v>[a-z0-9/+=]{40})(?![a-z0-9/+=])"
        ),
        gate=_contains("secret"),
        folded=True,
    ),
    _Pattern("url_credentials", re.compile(r"://(?P<v>[^\s:/?#@\[\]]+:[^\s/?#@\[\]]+)@"), gate=_contains("://")),
    _Pattern(
        "bearer_token",
        # A digit, or a length no English word has, tells a token from "the bearer of".
        re.compile(r"\bbearer[ \t]+(?P<v>(?=[a-z0-9._~+/-]*\d)[a-z0-9._~+/-]{8,}=*|[a-z0-9._~+/-]{20,}=*)"),
        gate=_contains("bearer"),
        folded=True,
    ),
    _Pattern(
        "auth_header",
        re.compile(
            r"\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
            r"(?:(?:bearer|basic|token|digest)[ \t]+)?(?P<v>[^\s\"',;]{6,})"
        ),
        gate=_contains("authorization"),
        folded=True,
    ),
    _Pattern(
        "labelled_secret",
        # The keyword may end a longer name ("db_password", "client-secret") but not a word.
        re.compile(
            r"(?<![a-z0-9])(?P<label>password|passwd|pwd|passphrase|secret|token|credentials?|apikey"
            r"|(?:api|access|private|secret|signing|encryption|auth|master)[_-]?key)"
            r"[\"'\]]{0,2}[ \t]*(?::=|=>|=|:)[ \t]*"
            r"(?:\"(?P<v>[^\"\n]+)\"|'(?P<v2>[^'\n]+)'|(?P<v3>[^\s\"',;]{3,}))"
        ),
        _labelled_value,
        gate=_contains("pass", "pwd", "secret", "key", "token", "credential"),
        folded=True,
    ),
    _Pattern(
        "card_number",
        # Digits in the usual groupings (4-4-4-4[-1..3], Amex 4-6-5, Diners 4-6-4) or unbroken;
        # the first digit is a real network's (2-6), which keeps timestamps and ids out.
        re.compile(
            r"[2-6](?<![\d.-][2-6])\d{3}(?:(?P<s>[ -])\d{4}(?P=s)\d{4}(?P=s)\d{4}(?:(?P=s)\d{1,3})?"
            r"|[ -]\d{6}[ -]\d{4,5}|\d{9,15})(?!\d|\.\d)"
        ),
        _luhn,
        gate=_searches(r"\d{4}"),
    ),
    _Pattern(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])"
        ),
        _email,
        gate=_contains("@"),
    ),
    _Pattern(
        "ipv4",
        re.compile(r"\d(?<![\d.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\d|\.\d)"),
        _ipv4,
        gate=_searches(r"\d\.\d{1,3}\.\d"),
    ),
    _Pattern(
        "ipv6",
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)"),
        _ipv6,
        # An address either shortens with "::" or has all eight groups.
        gate=lambda text: "::" in text or (text.count(":") >= 7 and _EIGHT_GROUPS.search(text) is not None),
    ),
    _Pattern(
        "phone",
        re.compile(
            # International: +CC, an optional (0) or (area), then groups; groups after the
            # first need a separator, which keeps backtracking bounded.
            r"\+(?<![\w+]\+)\d{1,3}(?:[ .-]?\(\d{1,4}\))?[ .-]?\d{1,12}(?:[ .-]\d{1,5}){0,5}(?!\w)"
            # North American: (415) 555-2671, 415-555-2671, 415.555.2671.
            r"|\((?<![\w(+-]\()\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?![\w-]|\.\d)"
            r"|\d(?<![\w(+-]\d)(?:\d{2}[ .-]\d{3}[ .-]\d{4}(?![\w-]|\.\d)"
            # National, after a trunk 0: 020 7946 0958, 06 12 34 56 78, 030-1234-5678.
            r"|(?<=0)\d{1,4}(?:[ .-]\d{2,5}){2,5}(?![\w-]|\.\d))"
        ),
        _phone,
        # Nine digits at least, in one run of digits and separators.
        gate=_searches(r"\d[\d ().+-]{7,}\d"),
    ),
)
_EIGHT_GROUPS = re.compile(r"[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){7}")
KINDS: tuple[str, ...] = tuple(pattern.kind for pattern in _PATTERNS)


# The detect-secrets pass.

# Shorter unquoted runs in prose are words, paths and ids, not keys.
_ENTROPY_MIN_CHARS = {"base64_high_entropy_string": 20, "hex_high_entropy_string": 32}
# Left out: every IPv4 address, public or not, is already redacted as ipv4.
_SKIPPED_PLUGINS = {"IPPublicDetector"}
# Every entry of detect-secrets' keyword DENYLIST contains one of these (a test checks it), so
# a line without any cannot match: a substring test skips its costliest rules on most lines.
KEYWORD_STEMS = ("key", "pass", "pwd", "secret", "contrase")

Scanner = Callable[[str], Iterator[tuple[int, int]]]


def _slug(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


@lru_cache(maxsize=1)
def _detectors() -> tuple[tuple[str, Scanner], ...]:
    """(kind, scanner) for each plugin. The plugins are used through their class attributes
    (`denylist`, `secret_type`) and constructors only: their analyze_line() would read
    detect-secrets' global settings and offer to verify secrets over the network."""
    # Imported on first use: detect-secrets pulls in requests, which a process that never
    # redacts deeply need not pay for.
    from detect_secrets.plugins import (
        artifactory,
        aws,
        azure_storage_key,
        basic_auth,
        cloudant,
        discord,
        github_token,
        gitlab_token,
        ibm_cloud_iam,
        ibm_cos_hmac,
        jwt,
        keyword,
        mailchimp,
        npm,
        openai,
        private_key,
        pypi_token,
        sendgrid,
        slack,
        softlayer,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString

    modules = (
        artifactory, aws, azure_storage_key, basic_auth, cloudant, discord, github_token,
        gitlab_token, ibm_cloud_iam, ibm_cos_hmac, jwt, mailchimp, npm, openai, private_key,
        pypi_token, sendgrid, slack, softlayer, square_oauth, stripe, telegram_token, twilio,
    )  # fmt: skip
    detectors: list[tuple[str, Scanner]] = []
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, RegexBasedDetector)
                and value.__module__ == module.__name__
                and value.__name__ not in _SKIPPED_PLUGINS
            ):
                check = getattr(value, "is_formally_valid", None)  # the JWT plugin's extra test
                detectors.append((_slug(value.secret_type), _regex_scanner(tuple(value.denylist), check)))
    # Free text reads like a config file ("password: hunter2"), not like code with quoted strings.
    detectors.append(
        (_slug(keyword.KeywordDetector.secret_type), _keyword_scanner(tuple(keyword.CONFIG_DENYLIST_REGEX_TO_GROUP.items())))
    )
    for plugin_class in (Base64HighEntropyString, HexHighEntropyString):
        kind = _slug(plugin_class.secret_type)
        detectors.append((kind, _entropy_scanner(plugin_class(), _ENTROPY_MIN_CHARS[kind])))
    return tuple(detectors)


def _regex_scanner(regexes: tuple[re.Pattern[str], ...], check: Callable[[str], bool] | None) -> Scanner:
    def scan(line: str) -> Iterator[tuple[int, int]]:
        for regex in regexes:
            for match in regex.finditer(line):
                if check is not None and not check(match.group(0)):
                    continue
                # What the plugin itself reports: each group that took part, else the match.
                groups = [i for i in range(1, regex.groups + 1) if match.group(i)]
                for start, end in [match.span(i) for i in groups] or [match.span()]:
                    yield _trim(line, start, end)

    return scan


def _keyword_scanner(rules: tuple[tuple[re.Pattern[str], int], ...]) -> Scanner:
    def scan(line: str) -> Iterator[tuple[int, int]]:
        folded = line.translate(_ASCII_FOLD)
        if not any(stem in folded for stem in KEYWORD_STEMS):
            return
        for regex, group in rules:
            for match in regex.finditer(line):
                if match.group(group):
                    yield match.span(group)

    return scan


def _entropy_scanner(plugin: Any, min_chars: int) -> Scanner:
    # Free text has no quotes to go by, so unquoted runs are tested, and only long ones that mix
    # letters and digits: prose, paths and UUIDs stay under the plugin's own entropy limit.
    token = re.compile(r"[%s]{%d,}" % (re.escape(plugin.charset), min_chars))

    def scan(line: str) -> Iterator[tuple[int, int]]:
        for match in token.finditer(line):
            value = match.group(0).strip("=")
            if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                continue
            if plugin.calculate_shannon_entropy(value) > plugin.entropy_limit:
                yield match.span()

    return scan


_TRIM = " \t\"'=:"


def _trim(line: str, start: int, end: int) -> tuple[int, int]:
    # Some plugin regexes take in the delimiters around the secret.
    while start < end and line[start] in _TRIM:
        start += 1
    while end > start and line[end - 1] in _TRIM:
        end -= 1
    return start, end


_LINE = re.compile(r"[^\n]+")
# Some plugin regexes are quadratic in the length of a line (npm's "//.+/:_authToken=" takes
# seconds on a 100 kB line of "://"), so long lines are scanned in overlapping windows: the
# overlap is longer than any token the plugins look for, so none is missed at a seam.
_WINDOW = 1024
_OVERLAP = 256


def _segments(text: str) -> Iterator[tuple[int, str]]:
    for line in _LINE.finditer(text):
        start, end = line.span()
        if end - start <= _WINDOW:
            yield start, line.group(0)
            continue
        for offset in range(start, end - _OVERLAP, _WINDOW - _OVERLAP):
            yield offset, text[offset : min(offset + _WINDOW, end)]


def _detect_secrets_spans(text: str) -> Iterator[tuple[int, int, str]]:
    detectors = _detectors()
    for offset, segment in _segments(text):
        for kind, scan in detectors:
            for start, end in scan(segment):
                if end > start:
                    yield offset + start, offset + end, kind
