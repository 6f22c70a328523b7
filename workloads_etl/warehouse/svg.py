"""Inline SVG charts for the HTML report: bars (stacked or grouped) and lines.

Self-contained markup (no script, no external font or stylesheet), so a report opens offline
and prints. Every text that comes from data is escaped; every mark carries a ``<title>`` (the
browser's tooltip) with its exact value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


@dataclass(frozen=True)
class Frame:
    """The plotting area inside a chart of ``width`` x ``height`` pixels."""

    width: int = 760
    height: int = 300
    left: int = 64
    right: int = 16
    top: int = 34
    bottom: int = 56

    @property
    def inner_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> float:
        return self.height - self.top - self.bottom


def nice_ceiling(value: float) -> float:
    """The axis maximum: four grid steps of a 1-2-2.5-5 multiple of a power of ten, at or
    above ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 4.0
    quarter = value / 4
    exponent = math.floor(math.log10(quarter))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10**exponent
        if candidate >= quarter:
            return 4 * candidate
    return 4 * 10.0 ** (exponent + 1)


def fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _tick(value: float, y_max: float) -> str:
    """A grid label with as many decimals as the grid step needs (at most four)."""
    step = y_max / 4
    decimals = next((d for d in range(5) if abs(round(step, d) - step) < 1e-9 * step), 4)
    return f"{value:,.{decimals}f}"


def _axes(frame: Frame, y_max: float, y_label: str) -> list[str]:
    out = []
    for i in range(5):
        value = y_max * i / 4
        y = frame.top + frame.inner_height * (1 - i / 4)
        out.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}" '
            f'y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#555">{escape(_tick(value, y_max))}</text>'
        )
    out.append(
        f'<text x="12" y="{frame.top + frame.inner_height / 2:.1f}" font-size="11" fill="#555" '
        f'transform="rotate(-90 12 {frame.top + frame.inner_height / 2:.1f})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def _x_labels(frame: Frame, labels: Sequence[str], centres: Sequence[float]) -> list[str]:
    widest = max((len(label) for label in labels), default=1)
    fits = max(1, int(frame.inner_width // (6.5 * widest + 12)))  # labels that fit side by side
    every = max(1, math.ceil(len(labels) / fits))
    out = []
    for i, (label, x) in enumerate(zip(labels, centres, strict=True)):
        if i % every == 0:
            y = frame.height - frame.bottom + 16
            out.append(
                f'<text x="{x:.1f}" y="{y}" font-size="11" fill="#555" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return out


def _legend(frame: Frame, names: Sequence[str]) -> list[str]:
    out = []
    x = float(frame.left)
    y = frame.height - 14
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.1f}" y="{y}" font-size="11" fill="#333">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return out


def _svg(frame: Frame, title: str, parts: list[str]) -> str:
    heading = (
        f'<text x="{frame.left}" y="18" font-size="13" font-weight="600" '
        f'fill="#222">{escape(title)}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" '
        f'height="{frame.height}"><title>{escape(title)}</title>{heading}'
        + "".join(parts)
        + "</svg>"
    )


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    y_label: str,
    stacked: bool = True,
    unit: str = "",
    frame: Frame | None = None,
) -> str:
    """One bar group per category; a stack (or a group) of one bar per series."""
    frame = frame or Frame()
    names = list(series)
    n = max(len(categories), 1)
    totals = [sum(series[s][i] for s in names) for i in range(len(categories))]
    peak = max(totals if stacked else [v for s in names for v in series[s]], default=0.0)
    y_max = nice_ceiling(peak)
    slot = frame.inner_width / n
    width = slot * 0.7 / (1 if stacked else max(len(names), 1))
    parts = _axes(frame, y_max, y_label)
    centres = []
    for i, category in enumerate(categories):
        x0 = frame.left + slot * i + slot * 0.15
        centres.append(frame.left + slot * (i + 0.5))
        base = 0.0
        for j, name in enumerate(names):
            value = float(series[name][i])
            height = frame.inner_height * value / y_max
            x = x0 if stacked else x0 + j * width
            y = frame.top + frame.inner_height - height - (base if stacked else 0.0)
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{max(height, 0.0):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(f'{category} - {name}: {fmt(value)}{unit}')}</title></rect>"
            )
            if stacked:
                base += height
    parts += _x_labels(frame, list(categories), centres)
    if len(names) > 1:
        parts += _legend(frame, names)
    return _svg(frame, title, parts)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    y_label: str,
    y_max: float | None = None,
    dashed: Sequence[str] = (),
    frame: Frame | None = None,
) -> str:
    """One polyline per series over evenly spaced points; ``dashed`` series (e.g. a
    capacity) are drawn dashed. A None value breaks the line."""
    frame = frame or Frame()
    names = list(series)
    values = [v for s in names for v in series[s] if v is not None]
    top = nice_ceiling(y_max if y_max is not None else max(values, default=0.0))
    n = max(len(x_labels) - 1, 1)
    xs = [frame.left + frame.inner_width * i / n for i in range(len(x_labels))]
    parts = _axes(frame, top, y_label)
    for j, name in enumerate(names):
        colour = PALETTE[j % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for x, value in zip(xs, series[name], strict=True):
            if value is None:
                runs.append([])
                continue
            y = frame.top + frame.inner_height * (1 - float(value) / top)
            runs[-1].append(f"{x:.1f},{y:.1f}")
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle class="mark" cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="1.6"'
                    f'{dash} points="{" ".join(run)}"><title>{escape(name)}</title></polyline>'
                )
    parts += _x_labels(frame, list(x_labels), xs)
    parts += _legend(frame, names)
    return _svg(frame, title, parts)
