"""The dashboard's charts as geometry for inline SVG: no JavaScript, no chart library, no CDN.

These functions only compute numbers and labels; the templates (routing/_chart_*.html) draw
them, so every label goes through autoescaping like any other text on the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from routing.stats import OUTCOMES, Bucket

WIDTH = 720
HEIGHT = 200
LEFT = 56  # room for the y axis labels
RIGHT = 28  # room for the last x label
TOP = 10
BOTTOM = 26  # room for the x axis labels
MAX_X_LABELS = 8
_SIX_HOURS = timedelta(hours=6)

# Fill per outcome, as SVG attributes so the charts need no stylesheet of their own.
COLOURS = {"primary": "#1d7a3e", "fallback": "#c98a12", "failed": "#b42318", "rejected": "#6b7480"}


@dataclass(frozen=True)
class Segment:
    outcome: str
    count: int
    y: float
    height: float
    colour: str


@dataclass(frozen=True)
class Column:
    x: float
    width: float
    segments: list[Segment]
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    bottom: float  # y of the x axis
    right: float  # x where the plot ends
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    columns: list[Column]
    points: list[Point]
    path: str  # the line through `points`, as an SVG path
    empty: bool


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _frame(buckets: list[Bucket], top_value: float, label: str) -> tuple[float, float, list[Tick], list[Tick]]:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    step = plot_width / max(len(buckets), 1)
    y_ticks = [
        Tick(position=TOP + plot_height * (1 - fraction), label=_number(top_value * fraction) + label)
        for fraction in (0, 0.5, 1)
    ]
    every = max(1, math.ceil(len(buckets) / MAX_X_LABELS))
    x_ticks = [
        Tick(position=LEFT + step * (i + 0.5), label=_time_label(bucket, buckets))
        for i, bucket in enumerate(buckets)
        if i % every == 0
    ]
    return step, plot_height, y_ticks, x_ticks


def calls_chart(buckets: list[Bucket]) -> Chart:
    """Calls per time bucket, one column each, stacked by outcome."""
    top_value = nice_ceiling(max((b.total for b in buckets), default=0))
    step, plot_height, y_ticks, x_ticks = _frame(buckets, top_value, "")
    columns = []
    for i, bucket in enumerate(buckets):
        y = TOP + plot_height
        segments = []
        for outcome in OUTCOMES:
            count = bucket.counts.get(outcome, 0)
            if not count:
                continue
            height = plot_height * count / top_value
            y -= height
            segments.append(Segment(outcome=outcome, count=count, y=round(y, 2), height=round(height, 2), colour=COLOURS[outcome]))
        detail = ", ".join(f"{bucket.counts[o]} {o}" for o in OUTCOMES if bucket.counts.get(o)) or "no calls"
        columns.append(
            Column(
                x=round(LEFT + step * i + step * 0.1, 2),
                width=round(step * 0.8, 2),
                segments=segments,
                title=f"{_span_label(bucket)}: {bucket.total} calls ({detail})",
            )
        )
    return Chart(
        width=WIDTH, height=HEIGHT, left=LEFT, top=TOP, bottom=TOP + plot_height, right=WIDTH - RIGHT,
        y_ticks=y_ticks, x_ticks=x_ticks, columns=columns, points=[], path="",
        empty=not any(b.total for b in buckets),
    )


def latency_chart(buckets: list[Bucket]) -> Chart:
    """Latency p95 per time bucket, as a line with a dot per bucket that had calls."""
    top_value = nice_ceiling(max((b.p95_ms for b in buckets if b.p95_ms is not None), default=0))
    step, plot_height, y_ticks, x_ticks = _frame(buckets, top_value, " ms")
    points = [
        Point(
            x=round(LEFT + step * (i + 0.5), 2),
            y=round(TOP + plot_height * (1 - bucket.p95_ms / top_value), 2),
            title=f"{_span_label(bucket)}: p95 {bucket.p95_ms:.0f} ms",
        )
        for i, bucket in enumerate(buckets)
        if bucket.p95_ms is not None
    ]
    path = " ".join(f"{'M' if i == 0 else 'L'}{p.x},{p.y}" for i, p in enumerate(points))
    return Chart(
        width=WIDTH, height=HEIGHT, left=LEFT, top=TOP, bottom=TOP + plot_height, right=WIDTH - RIGHT,
        y_ticks=y_ticks, x_ticks=x_ticks, columns=[], points=points, path=path, empty=not points,
    )


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _time_label(bucket: Bucket, buckets: list[Bucket]) -> str:
    multi_day = buckets[0].start.date() != buckets[-1].start.date() and bucket.end - bucket.start >= _SIX_HOURS
    return bucket.start.strftime("%a %H:%M" if multi_day else "%H:%M")


def _span_label(bucket: Bucket) -> str:
    return f"{bucket.start:%Y-%m-%d %H:%M}–{bucket.end:%H:%M} UTC"
