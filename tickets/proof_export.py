"""Rendering a proof: its page (the public page, the console preview and the standalone HTML
file share one body), Markdown and JSON.

Everything here reads `ProofArtifact.content` and nothing else, so a proof renders the same
however the records behind it change. The HTML is autoescaped throughout, and the charts are
drawn by `templates/tickets/_bar_chart.html` from numbers and escaped labels: nothing is marked
safe. The standalone file has its styles inline, no script, no external asset and no link
except the commit's, so it can be mailed or archived as it is. Markdown escapes every
character that could start markup (a link, an image, raw HTML) in the redacted text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.template.loader import render_to_string

from routing.comparison_charts import BarChart, bar_chart
from tickets.models import is_web_url


@dataclass(frozen=True)
class Format:
    content_type: str
    extension: str


FORMATS = {
    "html": Format("text/html; charset=utf-8", "html"),
    "md": Format("text/markdown; charset=utf-8", "md"),
    "json": Format("application/json; charset=utf-8", "json"),
}

# What was left out, by kind: (one, several).
WITHHELD_TEXT = {
    "case_inputs": (
        "the input of the evaluation case (shown as its SHA-256 and length)",
        "the inputs of all {n} evaluation cases (each shown as its SHA-256 and length)",
    ),
    "private_case_outputs": ("1 output of a private case", "{n} outputs of private cases"),
    "private_case_details": ("1 error detail of a private case", "{n} error details of private cases"),
    "instructions": ("the capability's instructions (marked private)", "the capability's instructions (marked private)"),
}


# --- numbers as text ----------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def dollars(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def amount(value: float) -> str:
    """A tolerance or threshold in dollars, without an exponent or trailing zeros."""
    return "$" + (f"{value:.8f}".rstrip("0").rstrip(".") or "0")


def error_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} × {n}" for name, n in counts.items()) or "none"


# --- what the templates and the Markdown share --------------------------------------------------


def route_rows(content: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for route in content["comparison"]["routes"]:
        metrics = route["metrics"]
        rows.append(
            {
                **route,
                "pass_rate": percent(metrics["verification_pass_rate"]),
                "latency_p50": milliseconds(metrics["latency_p50_ms"]),
                "latency_p95": milliseconds(metrics["latency_p95_ms"]),
                "mean_cost": dollars(metrics["mean_cost_usd"]),
                "errors": error_counts(route["errors_by_class"]),
                "agreement": percent(metrics["agreement_with_baseline"]),
                "fallback_rate": percent(metrics["fallback_rate"]),
            }
        )
    return rows


def charts(content: dict[str, Any]) -> list[BarChart]:
    routes = content["comparison"]["routes"]

    def bars(metric: str, scale: int = 1) -> list[tuple[str, Decimal | None, bool]]:
        out = []
        for route in routes:
            value = route["metrics"].get(metric)
            out.append((route["backend"], None if value is None else Decimal(str(value)) * scale, route["baseline"]))
        return out

    return [
        bar_chart(title="Verification pass rate (%)", bars=bars("verification_pass_rate", 100), fmt="{:.1f}%"),
        bar_chart(title="Latency p95 (ms)", bars=bars("latency_p95_ms"), fmt="{:.0f} ms", note="over the answered cases"),
        bar_chart(title="Mean cost per call (USD)", bars=bars("mean_cost_usd"), fmt="${:.6f}"),
        bar_chart(title="Agreement with the baseline (%)", bars=bars("agreement_with_baseline", 100), fmt="{:.1f}%"),
    ]


def withheld(content: dict[str, Any]) -> list[str]:
    counts = content["redactions"]["withheld"]
    return [WITHHELD_TEXT[kind][n > 1].format(n=n) for kind, n in counts.items() if n and kind in WITHHELD_TEXT]


def commit_url(content: dict[str, Any]) -> str:
    """The commit link, checked again here: only an http(s) URL ever becomes a link."""
    commit = content["ticket"].get("commit") or {}
    url = commit.get("url") or ""
    return url if is_web_url(url) else ""


def context(content: dict[str, Any]) -> dict[str, Any]:
    max_cost = content["capability"]["max_cost_usd"]
    return {
        "proof": content,
        "cost_tolerance": "no limit" if max_cost is None else f"{amount(max_cost)} per call",
        "routes": route_rows(content),
        "charts": charts(content),
        "withheld": withheld(content),
        "commit_url": commit_url(content),
    }


# --- the formats --------------------------------------------------------------------------------


def render_html(content: dict[str, Any], *, downloads: bool = False) -> str:
    """The standalone page: the public page (with `downloads`, links to its own exports) and
    the HTML export. Rendered without a request, so nothing from a session can reach it."""
    return render_to_string("tickets/proof_standalone.html", {**context(content), "downloads": downloads})


def render_json(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, indent=2) + "\n"


# Every ASCII punctuation character that can open markup anywhere in a line; CommonMark lets
# a backslash escape any of them.
_MD_INLINE = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")
# And those that open a block at the start of a line: bullets, setext rules, "1." lists (a ")"
# after the number is escaped already).
_MD_LINE_START = re.compile(r"^(\s*)(?:([-+=])|(\d+)\.)")


def md(text: Any) -> str:
    """Text for inline Markdown: escaped, on one line."""
    escaped = _MD_INLINE.sub(r"\\\1", " ".join(str(text or "").split()))
    return _MD_LINE_START.sub(lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\."), escaped)


def md_block(text: Any) -> str:
    """Text that keeps its lines: each escaped, joined by hard line breaks."""
    lines = [md(line) for line in str(text or "").splitlines() if line.strip()]
    return "  \n".join(lines)


_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"


def md_link(text: str, url: str) -> str:
    # <...> destination: parentheses are fine inside, and <, > and spaces are percent-encoded.
    return f"[{md(text)}](<{quote(url, safe=_URL_SAFE)}>)"


def render_markdown(content: dict[str, Any]) -> str:
    ticket, capability, comparison = content["ticket"], content["capability"], content["comparison"]
    out: list[str] = [f"# Proof for {md(ticket['key'])}: {md(ticket['title'])}", ""]
    commit = ticket.get("commit")
    url = commit_url(content)
    out.append(
        f"Proof `{content['slug']}`, made {md(content['created_at'])} (schema version {content['schema_version']}). "
        f"Ticket status: {md(ticket['status'])}."
    )
    if commit:
        out += ["", "Commit: " + (md_link(commit["text"], url) if url else md(commit["text"]))]
    redactions = content["redactions"]
    kinds = ", ".join(f"{md(kind)} × {n}" for kind, n in redactions["by_kind"].items()) or "none needed"
    out += ["", f"> Sanitized: {redactions['total']} redactions ({kinds})."]
    if withheld(content):
        out.append("> Withheld: " + "; ".join(md(item) for item in withheld(content)) + ".")
    out.append("> Secret references, base URLs and internal ids are never included.")
    if ticket["description"]:
        out += ["", "## Ticket", "", md_block(ticket["description"])]

    out += ["", "## Capability contract", ""]
    contract = [
        ("Capability", f"{capability['slug']}" + (f" ({capability['name']})" if capability["name"] else "")),
        ("Intent", capability["intent"]),
        ("Privacy boundary", capability["privacy"]),
        ("Cost tolerance", "no limit" if capability["max_cost_usd"] is None else f"{amount(capability['max_cost_usd'])} per call"),
        ("Latency budget", "n/a" if capability["latency_budget_ms"] is None else f"{capability['latency_budget_ms']} ms"),
        ("Fallback", f"{capability['fallback']} on {', '.join(capability['fallback_on']) or 'no failure class'}"),
        ("Verification", f"{capability['verify']['kind']} ({capability['verify']['detail']})"),
        (
            "Instructions",
            "withheld (marked private)" if capability["instructions_withheld"] else (capability["instructions"] or "none"),
        ),
    ]
    out += [f"- **{name}:** {md(value)}" for name, value in contract]

    rows = route_rows(content)
    out += ["", "## Routes compared", ""]
    out.append("| Route | Role | Locality | Inspectability | Cases run | Pass rate | Latency p50 | Latency p95 | Mean cost | Errors | Agreement |")
    out.append("|---|---|---|---|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        route = md(row["backend"]) + (" (baseline)" if row["baseline"] else "")
        cells = [
            route,
            md(row["role"]),
            md(row["locality"]),
            md(row["inspectability"]["level"]),
            str(row["cases_run"]),
            row["pass_rate"],
            row["latency_p50"],
            row["latency_p95"],
            md(row["mean_cost"]),
            md(row["errors"]),
            row["agreement"],
        ]
        out.append("| " + " | ".join(cells) + " |")

    out += ["", "## Acceptance criteria", ""]
    if content["criteria"]:
        out.append("| Criterion | " + " | ".join(md(row["backend"]) for row in rows) + " |")
        out.append("|---|" + "---|" * len(rows))
        for criterion in content["criteria"]:
            # A reason that is not evaluable says so itself.
            cells = [(("met: " if r["met"] else "not met: ") if r["evaluable"] else "") + md(r["reason"]) for r in criterion["results"]]
            note = f" ({md(criterion['note'])})" if criterion["note"] else ""
            out.append(f"| {md(criterion['text'])}{note} | " + " | ".join(cells) + " |")
        out.append("| **All criteria** | " + " | ".join(md(v["summary"]) for v in content["verdicts"]) + " |")
    else:
        out.append("The ticket has no acceptance criteria.")

    out += ["", "## Decisions", ""]
    for decision in content["decisions"]:
        out.append(
            f"- **{md(decision['decision'])}** {md(decision['backend'])}, by {md(decision['reviewer'])} ({decision['role']}), "
            f"{md(decision['decided_at'])}; evidence: {md(decision['evidence'])}"
        )
        out.append(f"  - Comment: {md(decision['comment'])}")
        if decision["override_reason"]:
            out.append(f"  - Override reason: {md(decision['override_reason'])}")
        for item in decision["criteria"]:
            out.append(f"  - {'met' if item['met'] else 'not met'}: {md(item['text'])}: {md(item['reason'])}")
    if not content["decisions"]:
        out.append("No decision yet.")

    out += ["", "## Cases side by side", ""]
    for case in comparison["cases"]:
        title = case["label"] + (" (private)" if case["private"] else "") + (f": {case['name']}" if case["name"] else "")
        out += [f"### {md(title)}", ""]
        out += [f"Input: SHA-256 `{case['input_sha256']}`, {case['input_chars']} characters (never shown).", ""]
        if case["expected"]:
            out += [f"Expected: {md(case['expected'])}", ""]
        for cell in case["cells"]:
            out.append(f"- **{md(cell['backend'])}**: {md(_cell_summary(cell))}")
        out.append("")

    sample = content["route_log_sample"]
    out += ["## Route log sample", ""]
    out.append(
        f"The {sample['size']} most recent entries ({md(sample['outcome'])} outcome) when the proof was made. Route logs "
        "keep no inputs and no outputs: each shows its input's SHA-256 and length; outputs above come from the comparison."
    )
    for entry in sample["entries"]:
        out += ["", f"### {md(entry['created_at'])}: {md(entry['outcome'])}, answered by {md(entry['backend'] or 'none')}", ""]
        out.append(
            f"- Intent {md(entry['intent'])}, privacy {md(entry['privacy'])}; fallback eligible: "
            f"{_yes(entry['fallback_eligible'])}, used: {_yes(entry['fallback_used'])}"
        )
        verification = entry["verification"]
        if verification is not None:
            out.append(f"- Verification: {'passed' if verification['passed'] else 'failed'} ({md(verification['detail'])})")
        out.append(f"- Input: SHA-256 `{entry['input_sha256']}`, {entry['input_chars']} characters")
        out.append(f"- Latency {milliseconds(entry['latency_ms'])}, cost {md(dollars(entry['cost_usd']))}")
        for reason in entry["reasons"]:
            out.append(f"- Reason: {md(reason)}")
        for attempt in entry["attempts"]:
            failure = f" {attempt['error_class']}" if attempt["error_class"] else ""
            detail = f": {md(attempt['detail'])}" if attempt["detail"] else ""
            out.append(
                f"- Attempt on {md(attempt['backend'])} ({md(attempt['locality'])}): {md(attempt['status'])}{md(failure)}"
                f"{detail}, {milliseconds(attempt['latency_ms'])}"
            )
    return "\n".join(out) + "\n"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _cell_summary(cell: dict[str, Any]) -> str:
    if cell["status"] == "not_run":
        return f"not run ({cell['detail']})"
    if cell["status"] == "missing":
        return "no result"
    parts = []
    if cell["output_withheld"]:
        parts.append("private case: output withheld")
    elif cell["output"] is not None:
        parts.append(f"answered {cell['output']}")
    if cell["passed"]:
        parts.append("verified")
    elif cell["error_class"]:
        parts.append(cell["error_class"] + (f" ({cell['detail']})" if cell["detail"] else ""))
    parts.append(milliseconds(cell["latency_ms"]))
    return "; ".join(parts)


def render(content: dict[str, Any], fmt: str) -> str:
    if fmt == "html":
        return render_html(content)
    if fmt == "md":
        return render_markdown(content)
    return render_json(content)
