"""Server-side SVG bar charts for comparison runs: one bar per route.

Only geometry is computed here; `templates/tickets/_bar_chart.html` draws it, so every label
goes through the template's autoescaping. Numbers are formatted here as plain text, so the SVG
never depends on the locale.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from routing.comparisons import RouteSummary

WIDTH = 380
LABEL_WIDTH = 120
VALUE_WIDTH = 80
ROW = 26
BAR = 16
PAD = 6


@dataclass(frozen=True)
class Bar:
    label: str
    value_text: str
    y: int
    text_y: int
    width: str
    css: str  # "bar", "bar baseline", or "bar none" when there is no value


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    bar_x: int
    value_x: int
    bars: list[Bar]
    note: str


def bar_chart(
    *, title: str, bars: list[tuple[str, Decimal | None, bool]], fmt: str = "{:.2f}", note: str = ""
) -> BarChart:
    """bars: (label, value or None, is the baseline). Bars scale to the largest value."""
    top = max((value for _, value, _ in bars if value is not None), default=Decimal("0"))
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    drawn = []
    for index, (label, value, baseline) in enumerate(bars):
        y = PAD + index * ROW
        if value is None:
            width, text, css = Decimal("0"), "n/a", "bar none"
        else:
            width = (value / top * span) if top else Decimal("0")
            text, css = fmt.format(value), "bar baseline" if baseline else "bar"
        drawn.append(
            Bar(
                label=label if len(label) <= 22 else label[:21] + "…",
                value_text=text,
                y=y,
                text_y=y + BAR - 3,
                width=f"{max(width, Decimal('0')):.1f}",
                css=css,
            )
        )
    return BarChart(
        title=title,
        width=WIDTH,
        height=PAD * 2 + ROW * max(1, len(bars)),
        bar_x=LABEL_WIDTH,
        value_x=LABEL_WIDTH + span + 6,
        bars=drawn,
        note=note,
    )


def comparison_charts(summaries: list[RouteSummary]) -> list[BarChart]:
    """The four charts of a comparison page, one bar per route."""

    def bars(metric: str, scale: Decimal = Decimal("1")) -> list[tuple[str, Decimal | None, bool]]:
        rows = []
        for s in summaries:
            value = s.metrics.get(metric)
            rows.append((s.backend, None if value is None else value * scale, s.is_baseline))
        return rows

    return [
        bar_chart(title="Verification pass rate (%)", bars=bars("verification_pass_rate", scale=Decimal(100)), fmt="{:.1f}%"),
        bar_chart(title="Latency p95 (ms)", bars=bars("latency_p95_ms"), fmt="{:.0f} ms", note="over the answered cases"),
        bar_chart(title="Mean cost per call (USD)", bars=bars("mean_cost_usd"), fmt="${:.6f}"),
        bar_chart(
            title="Agreement with the baseline (%)", bars=bars("agreement_with_baseline", scale=Decimal(100)), fmt="{:.1f}%"
        ),
    ]
