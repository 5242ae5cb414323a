"""Inline SVG charts of the report pages, drawn by our own code (no plotting library, no scripts).

A series with one point is a mark, not a line; every series has its own colour, marker shape and dash,
and earlier series are drawn wider under later ones, so series that coincide stay visible. Axes span
the data (not 0 unless the data reaches it) with round ticks: 1, 2, 2.5 or 5 times a power of ten.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from worker.engine.reports.parts import esc

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "cross", "plus", "star")
DASHES = ("", "7 3", "2 2", "9 3 2 3", "4 4", "1 3")
NICE_STEPS = (1.0, 2.0, 2.5, 5.0)
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM, _INSET = 720, 300, 60, 260, 20, 40, 8


@dataclass(frozen=True)
class Series:
    """One series of a chart: its label and (x, y) points; `dashed` draws it dashed, and black unless
    it names its `color` (a summary such as the worst case); otherwise it gets its own colour."""

    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    color: str | None = None

    @property
    def marker_only(self) -> bool:
        """A single point (an attack run at one eps) is drawn as a mark, never as a line."""
        return len(self.points) == 1


@dataclass(frozen=True)
class Reference:
    """A horizontal reference line (clean accuracy, a constant guess), drawn dotted and grey."""

    label: str
    y: float


def nice_step(value: float) -> float:
    """The smallest round number (1, 2, 2.5 or 5 times a power of ten) at least `value` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next((m * power for m in NICE_STEPS if m * power >= value * (1 - 1e-9)), 10 * power)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round ticks covering [low, high] tightly: a step of 1, 2, 2.5 or 5 times a power of ten, about
    `count` of them (3 to 7). A single value gets a tick on each side of it."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("nice_ticks needs finite bounds")
    low, high = min(low, high), max(low, high)
    if high - low <= 1e-12 * max(1.0, abs(low)):
        step = nice_step(abs(low) / 2) if low else 1.0
        return [round(low - step, 12), low, round(low + step, 12)]
    base = 10.0 ** math.floor(math.log10((high - low) / count))
    best: tuple[float, int, list[float]] | None = None
    for power in (base / 10, base, base * 10):
        for multiple in NICE_STEPS:
            step = multiple * power
            first, last = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
            n = int(round((last - first) / step)) + 1
            if 3 <= n <= 7 and (best is None or (last - first, abs(n - count)) < (best[0], best[1])):
                best = (last - first, abs(n - count), [round(first + i * step, 12) for i in range(n)])
    assert best is not None  # some step of the three decades always gives 3 to 7 ticks
    return best[2]


def _share_ticks(low: float, high: float) -> list[float]:
    """Ticks of a share axis: round ticks within 0..1 covering the data."""
    ticks = [t for t in nice_ticks(max(0.0, low), min(1.0, high)) if -1e-9 <= t <= 1 + 1e-9]
    return ticks if len(ticks) > 1 else [0.0, 1.0]


def _tick_text(value: float, step: float, share: bool) -> str:
    """A tick label with the digits its step needs."""
    scale = 100.0 if share else 1.0
    scaled = step * scale
    digits = max(0, -math.floor(math.log10(scaled) + 1e-9)) if scaled > 0 else 0
    if abs(scaled * 10**digits - round(scaled * 10**digits)) > 1e-6:
        digits += 1
    return f"{value * scale:.{digits}f}" + ("%" if share else "")


def _shape(shape: str, x: float, y: float, size: float) -> tuple[str, str]:
    """The SVG element and geometry attributes of a marker shape centred at (x, y)."""
    if shape == "circle":
        return "circle", f'cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}"'
    if shape == "square":
        s = size * 0.9
        return "rect", f'x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" height="{2 * s:.1f}"'
    if shape in ("cross", "plus"):
        a, b, c, d = x - size, x + size, y - size, y + size
        if shape == "cross":
            return "path", f'd="M{a:.1f},{c:.1f}L{b:.1f},{d:.1f}M{a:.1f},{d:.1f}L{b:.1f},{c:.1f}"'
        return "path", f'd="M{a:.1f},{y:.1f}H{b:.1f}M{x:.1f},{c:.1f}V{d:.1f}"'
    corners = {
        "triangle": [(0.0, -1.1), (1.0, 0.8), (-1.0, 0.8)],
        "triangle-down": [(0.0, 1.1), (1.0, -0.8), (-1.0, -0.8)],
        "diamond": [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)],
        "star": [
            (math.cos(-math.pi / 2 + i * math.pi / 5) * r, math.sin(-math.pi / 2 + i * math.pi / 5) * r)
            for i, r in enumerate([1.0, 0.45] * 5)
        ],
    }[shape]
    points = " ".join(f"{x + 1.25 * size * dx:.1f},{y + 1.25 * size * dy:.1f}" for dx, dy in corners)
    return "polygon", f'points="{points}"'


def marker(shape: str, x: float, y: float, size: float, color: str, tip: str = "") -> str:
    """One marker (with an escaped tooltip); filled shapes get a white outline so stacked ones stay apart."""
    element, geometry = _shape(shape, x, y, size)
    paint = (
        f'fill="none" stroke="{color}" stroke-width="2.5"'
        if element == "path"
        else f'fill="{color}" stroke="#fff" stroke-width="0.8"'
    )
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return f"<{element} {geometry} {paint}>{title}</{element}>"


@dataclass(frozen=True)
class Style:
    """How one series is drawn: colour, dash pattern, line width, marker shape and size."""

    color: str
    dash: str
    width: float
    shape: str
    size: float


def style(index: int, dashed: bool = False, color: str | None = None) -> Style:
    """The style of the index-th series: its own colour, marker and dash; earlier series wider."""
    return Style(
        color=color or ("#000" if dashed else COLORS[index % len(COLORS)]),
        dash="6 4" if dashed else DASHES[index % len(DASHES)],
        width=max(1.5, 4.5 - 0.75 * index),
        shape=MARKERS[index % len(MARKERS)],
        size=max(3.0, 5.5 - 0.5 * index),
    )


@dataclass(frozen=True)
class _Frame:
    """The plot area and the axis ranges: data coordinates to SVG pixels."""

    x_ticks: list[float]
    y_ticks: list[float]
    share: bool
    width: float = _W - _LEFT - _RIGHT
    height: float = _H - _TOP - _BOTTOM

    def sx(self, value: float) -> float:
        """The pixel column of an x value (inset from the frame, so marks at the ends stay whole)."""
        low, high = self.x_ticks[0], self.x_ticks[-1]
        return _LEFT + _INSET + (self.width - 2 * _INSET) * (value - low) / ((high - low) or 1.0)

    def sy(self, value: float) -> float:
        """The pixel row of a y value (inset from the frame)."""
        low, high = self.y_ticks[0], self.y_ticks[-1]
        return _TOP + _INSET + (self.height - 2 * _INSET) * (1.0 - (value - low) / ((high - low) or 1.0))


def _axes(frame: _Frame, x_label: str, y_label: str) -> list[str]:
    """The frame, grid lines, round ticks and axis labels."""
    right, bottom, middle = _LEFT + frame.width, _TOP + frame.height, _TOP + frame.height / 2
    parts = [
        f'<rect x="{_LEFT}" y="{_TOP}" width="{frame.width}" height="{frame.height}" '
        'fill="none" stroke="#888"/>'
    ]
    for tick in frame.y_ticks:
        y, text = frame.sy(tick), _tick_text(tick, frame.y_ticks[1] - frame.y_ticks[0], frame.share)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(text)}</text>'
        )
    for tick in frame.x_ticks:
        x, text = frame.sx(tick), _tick_text(tick, frame.x_ticks[1] - frame.x_ticks[0], False)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{esc(text)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + frame.width / 2:.1f}" y="{_H - 6}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 14 {middle:.1f})">'
        f"{esc(y_label)}</text>"
    )
    return parts


def _series(frame: _Frame, line: Series, look: Style, x_label: str, y_label: str) -> str:
    """One series as a group: its line (unless it has one point) and a marker per point."""
    dash = f' stroke-dasharray="{look.dash}"' if look.dash else ""
    points = sorted(line.points)
    group = [f'<g class="series"><title>{esc(line.label)}</title>']
    if not line.marker_only:
        path = " ".join(f"{frame.sx(x):.1f},{frame.sy(y):.1f}" for x, y in points)
        group.append(
            f'<polyline points="{path}" fill="none" stroke="{look.color}" stroke-width="{look.width}"{dash}/>'
        )
    for x, y in points:
        tip = f"{line.label}: {x_label} {x:g}, {y_label} {_value(y, frame.share)}"
        group.append(marker(look.shape, frame.sx(x), frame.sy(y), look.size, look.color, tip))
    return "".join(group) + "</g>"


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    share: bool = True,
    references: Sequence[Reference] = (),
) -> str:
    """An inline SVG chart of the series (lines with markers; one-point series as marks only) and the
    horizontal reference lines; `share` reads y as a share (percent ticks within 0..100%)."""
    series = [s for s in series if s.points]
    if not series:
        return ""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [r.y for r in references]
    y_low, y_high = min(ys), max(ys)
    if y_high - y_low < 1e-9:  # one value: a little room above and below it
        pad = abs(y_low) * 0.1 or 0.1
        y_low, y_high = y_low - pad, y_high + pad
    y_ticks = _share_ticks(y_low, y_high) if share else nice_ticks(y_low, y_high)
    frame = _Frame(nice_ticks(min(xs), max(xs)), y_ticks, share)
    label = esc(f"{y_label} against {x_label}")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{label}">',
        *_axes(frame, x_label, y_label),
    ]
    legend: list[tuple[str, str, str]] = []
    dotted = 'stroke="#777" stroke-width="1.5" stroke-dasharray="1 3"'
    for ref in references:
        y = frame.sy(ref.y)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + frame.width}" y2="{y:.1f}" {dotted}/>')
        legend.append((dotted, "", f"{ref.label} ({_value(ref.y, share)})"))
    for index, line in enumerate(series):
        look = style(index, line.dashed, line.color)
        parts.append(_series(frame, line, look, x_label, y_label))
        dash = f' stroke-dasharray="{look.dash}"' if look.dash else ""
        stroke = (
            "" if line.marker_only else f'stroke="{look.color}" stroke-width="{min(look.width, 3)}"{dash}'
        )
        legend.append((stroke, marker(look.shape, 0, 0, 4, look.color), line.label))
    for row, (stroke, mark, text) in enumerate(legend):
        x0, y0 = _W - _RIGHT + 12, _TOP + 16 * row + 8
        if stroke:
            parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + 24}" y2="{y0}" {stroke}/>')
        if mark:
            parts.append(f'<g transform="translate({x0 + 12} {y0})">{mark}</g>')
        parts.append(f'<text x="{x0 + 30}" y="{y0 + 4}">{esc(text)}</text>')
    return "".join(parts) + "</svg>"


def _value(y: float, share: bool) -> str:
    """A y value for a tooltip or a legend."""
    return f"{100 * y:.1f}%" if share else f"{y:.4g}"
