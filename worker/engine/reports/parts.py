"""Building blocks of every report page: escaping, numbers, tables, inline SVG line charts, images.

No scripts and no external assets. Every string taken from a report is escaped here, so a hostile
model or dataset name cannot inject markup.
"""

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def esc(value: Any) -> str:
    """Escape any value for HTML text and attribute content."""
    return html.escape(str(value), quote=True)


def finite(value: Any) -> bool:
    """A real, finite number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 4) -> str:
    """A number for people ("n/a" when missing), escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    return esc(f"{value:.{digits}g}")


def pct(value: Any) -> str:
    """A share as a percentage ("n/a" when missing)."""
    return esc(f"{100 * value:.1f}%") if finite(value) else "n/a"


def table(headers: Iterable[str] | None, rows: Iterable[Iterable[str]]) -> str:
    """A table from already-escaped cells; headers (escaped here) may be None for a key-value table."""
    head = ""
    if headers is not None:
        head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names and values, skipping values that are None."""
    rows = [
        [f"<th>{esc(key)}</th>", num(value) if finite(value) else esc(value)]
        for key, value in pairs
        if value is not None
    ]
    return table(None, rows)


def section(title: str, *parts: str) -> str:
    """A titled section, empty when every part is empty."""
    content = "".join(parts)
    return f"<h2>{esc(title)}</h2>{content}" if content else ""


def png_img(png: bytes | str, caption: str, *, scale: int = 8, width: int | None = None) -> str:
    """An inline PNG (bytes or base64 text) as a figure, scaled up with crisp pixels."""
    data = png if isinstance(png, str) else base64.b64encode(png).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    style = f"image-rendering:pixelated;min-width:{int(scale) * 8}px"
    return (
        f'<figure class="img"><img src="data:image/png;base64,{esc(data)}" alt="{esc(caption)}"'
        f'{size} style="{style}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


@dataclass(frozen=True)
class Series:
    """One line of a chart: its label, (x, y) points, and whether it is drawn dashed."""

    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    share: bool = True,
    log_x: bool = False,
) -> str:
    """An inline SVG line chart; with `share`, y runs from 0% to 100%."""
    series = [s for s in series if s.points]
    if not series:
        return ""
    width, height, left, right, top, bottom = 700, 300, 55, 250, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points if not log_x or x > 0]
    ys = [y for s in series for _, y in s.points]
    x_lo, x_hi = (min(xs), max(xs)) if log_x else (0.0, max(xs, default=1.0) or 1.0)
    if log_x:
        x_lo, x_hi = math.log10(x_lo), math.log10(x_hi) if x_hi > x_lo else math.log10(x_lo) + 1
    y_lo, y_hi = (0.0, 1.0) if share else (min(0.0, min(ys)), max(ys) or 1.0)

    def sx(value: float) -> float:
        value = math.log10(value) if log_x else value
        return left + plot_w * (value - x_lo) / ((x_hi - x_lo) or 1.0)

    def sy(value: float) -> float:
        clipped = min(max(value, y_lo), y_hi)
        return top + plot_h * (1.0 - (clipped - y_lo) / ((y_hi - y_lo) or 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(f"{y_label} against {x_label}")}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>',
    ]
    for index in range(5):
        tick = y_lo + (y_hi - y_lo) * index / 4
        y = sy(tick)
        text = f"{tick:.0%}" if share else f"{tick:.3g}"
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(text)}</text>')
        raw = x_lo + (x_hi - x_lo) * index / 4
        value = 10**raw if log_x else raw
        x = left + plot_w * index / 4
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{esc(f"{value:.3g}")}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">{esc(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{esc(y_label)}</text>'
    )
    for index, line in enumerate(series):
        color = "#000" if line.dashed else COLORS[index % len(COLORS)]
        points = [(x, y) for x, y in line.points if not log_x or x > 0]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in points:
            tip = esc(
                f"{line.label}: {x_label}={x:g}, {y_label}={y:.1%}"
                if share
                else f"{line.label}: {x:g}, {y:.4g}"
            )
            circle = f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
            parts.append(f"{circle}<title>{tip}</title></circle>")
        legend_y = top + 14 * index + 8
        parts.append(
            f'<line x1="{width - right + 12}" y1="{legend_y}" x2="{width - right + 32}" y2="{legend_y}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{width - right + 36}" y="{legend_y + 4}">{esc(line.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def figure(chart: str, caption: str) -> str:
    """A chart with its caption; empty when the chart is."""
    return f"<figure>{chart}<figcaption>{esc(caption)}</figcaption></figure>" if chart else ""
