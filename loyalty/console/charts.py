"""Bar charts as plain geometry, drawn as SVG by the `bar_chart` macro: no script, no network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, GAP = 600, 200, 0.2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    legend: tuple[str, ...]
    rows: tuple[Row, ...]
    label_heading: str
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT


def bar_chart(labels: Sequence[str], series: dict[str, Sequence[int]], *, label_heading: str = "Period") -> Chart:
    """Grouped bars: one group per label, one bar per series, scaled to the largest value."""
    names = tuple(series)
    values = [tuple(series[name][i] for name in names) for i in range(len(labels))]
    top = max((v for row in values for v in row), default=0) or 1
    group = WIDTH / max(len(labels), 1)
    bar_width = group * (1 - GAP) / max(len(names), 1)
    bars = []
    for i, (label, row) in enumerate(zip(labels, values, strict=True)):
        for s, value in enumerate(row):
            height = round(HEIGHT * max(value, 0) / top, 2)
            x = round(i * group + group * GAP / 2 + s * bar_width, 2)
            bars.append(Bar(x, round(HEIGHT - height, 2), round(bar_width, 2), height, s,
                            f"{label}, {names[s]}: {value:,}"))
    return Chart(tuple(bars), names, tuple(Row(label, row) for label, row in zip(labels, values, strict=True)),
                 label_heading)
