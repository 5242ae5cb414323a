"""A self-contained HTML page for an evasion report: tables, checks and inline SVG plots.

No scripts and no external assets. Every string taken from the report is escaped with
html.escape, so a hostile model name or dataset name cannot inject markup.
"""

import html
import math
from collections.abc import Callable, Iterable
from typing import Any

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}.pass{color:#17692b;font-weight:bold}.fail{color:#b00020;font-weight:bold}
figure{margin:1em 0}svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text and attribute content."""
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A number for people ("n/a" when missing), escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return _e(f"{value:.{digits}g}")


def _pct(value: Any) -> str:
    """A share as a percentage ("n/a" when missing)."""
    return _e(f"{100 * value:.1f}%") if isinstance(value, int | float) else "n/a"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A table from already-escaped cells (headers are escaped here)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _attack_label(attack: dict[str, Any]) -> str:
    """Human label of an attack entry (unescaped)."""
    label = f"{attack.get('name', '?')} {attack.get('norm', '?')}"
    if attack.get("targeted"):
        label += f" targeted ({attack.get('target_mode') or 'n/a'})"
    return label


def _summary(report: dict[str, Any]) -> str:
    """Summary table: identity, sample count, clean accuracy, seed and versions."""
    rows = [
        [_e(key), _e(report[key])]
        for key in ("kind", "model_id", "dataset_id", "seed", "device")
        if key in report
    ]
    rows.append(["samples", _num(report.get("n_samples"))])
    rows.append(["clean accuracy", _pct(report.get("clean_accuracy"))])
    if "input_range" in report:
        rows.append(["input range", _e(report["input_range"])])
    versions = report.get("versions")
    if isinstance(versions, dict):
        rows.append(["versions", ", ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items())])
    return "<h2>Summary</h2>" + _table(["", ""], rows)


def _worst_case(report: dict[str, Any]) -> str:
    """Worst-case robust accuracy per norm and eps."""
    rows = [
        [
            _e(row.get("norm", "")),
            _num(row.get("eps")),
            _pct(row.get("robust_accuracy")),
            _num(row.get("n_attacks")),
        ]
        for row in report.get("worst_case", [])
    ]
    note = "<p>A sample counts as robust only if it stays correctly classified under every attack.</p>"
    return (
        "<h2>Worst case over attacks</h2>"
        + note
        + _table(["norm", "eps", "robust accuracy", "attacks"], rows)
    )


# Result columns in display order: key, header, formatter. Only columns some row has are shown.
_RESULT_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("eps", "eps", _num),
    ("patch_scale", "patch scale", _num),
    ("robust_accuracy", "robust accuracy", _pct),
    ("attack_success_rate", "success rate", _pct),
    ("success_rate", "success rate", _pct),
    ("clean_accuracy", "clean accuracy", _pct),
    ("mean_perturbation", "mean pert.", _num),
    ("median_perturbation", "median pert.", _num),
    ("max_perturbation", "max pert.", _num),
    ("mean_queries", "mean queries", _num),
    ("max_queries", "max queries", _num),
    ("seconds", "seconds", lambda value: _num(value, 3)),
)


def _attack_section(attack: dict[str, Any]) -> str:
    """Parameters and per-budget results of one attack."""
    params = attack.get("params") or {}
    param_rows = [[_e(key), _e(value)] for key, value in params.items()]
    results = attack.get("results", [])
    columns = [column for column in _RESULT_COLUMNS if any(column[0] in row for row in results)]
    rows = [[fmt(row.get(key)) for key, _, fmt in columns] for row in results]
    threat = f" <small>({_e(attack['threat_model'])})</small>" if attack.get("threat_model") else ""
    return (
        f"<h3>{_e(_attack_label(attack))}{threat}</h3>"
        + _table(["parameter", "value"], param_rows)
        + _table([header for _, header, _ in columns], rows)
    )


def _checks(report: dict[str, Any]) -> str:
    """Sanity checks with pass or fail."""
    rows = [
        [
            _e(check.get("name", "")),
            '<span class="pass">pass</span>' if check.get("passed") else '<span class="fail">FAIL</span>',
            _e(check.get("detail", "")),
        ]
        for check in report.get("checks", [])
    ]
    return "<h2>Sanity checks</h2>" + _table(["check", "result", "detail"], rows)


def _finite(value: Any) -> bool:
    """A real, finite number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _series_for(report: dict[str, Any], norm: str) -> list[tuple[str, list[tuple[float, float]], bool]]:
    """(label, points, dashed) for each attack of a norm, then the worst case; clean accuracy at eps 0."""
    clean = report.get("clean_accuracy")
    start = [(0.0, float(clean))] if _finite(clean) else []
    series = []
    entries = [
        (_attack_label(a), a.get("results", []), False)
        for a in report.get("attacks", [])
        if a.get("norm") == norm
    ]
    entries.append(("worst case", [r for r in report.get("worst_case", []) if r.get("norm") == norm], True))
    for label, rows, dashed in entries:
        points = sorted(
            (float(r["eps"]), float(r["robust_accuracy"]))
            for r in rows
            if _finite(r.get("eps")) and _finite(r.get("robust_accuracy"))
        )
        if points:
            series.append((label, start + points, dashed))
    return series


def _plot(norm: str, series: list[tuple[str, list[tuple[float, float]], bool]]) -> str:
    """Robust accuracy against eps as an inline SVG line chart."""
    width, height, left, right, top, bottom = 700, 300, 50, 250, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max((x for _, points, _ in series for x, _ in points), default=1.0) or 1.0

    def sx(value: float) -> float:
        return left + plot_w * value / x_max

    def sy(value: float) -> float:
        return top + plot_h * (1.0 - min(max(value, 0.0), 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(f"robust accuracy against eps, {norm}")}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.0%}</text>')
    for index in range(5):
        value = x_max * index / 4
        x = sx(value)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#888"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{_e(f"{value:.3g}")}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">eps ({_e(norm)})</text>'
    )
    for index, (label, points, dashed) in enumerate(series):
        color = "#000" if dashed else _COLORS[index % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in points:
            tip = _e(f"{label}: eps={x:g}, robust accuracy={y:.1%}")
            circle = f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
            parts.append(f"{circle}<title>{tip}</title></circle>")
        legend_y = top + 14 * index + 8
        parts.append(
            f'<line x1="{width - right + 12}" y1="{legend_y}" x2="{width - right + 32}" y2="{legend_y}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{width - right + 36}" y="{legend_y + 4}">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plots(report: dict[str, Any]) -> str:
    """One robust-accuracy-vs-eps figure per norm present in the report."""
    norms = sorted({str(a.get("norm")) for a in report.get("attacks", [])})
    figures = []
    for norm in norms:
        series = _series_for(report, norm)
        if series:
            caption = (
                f"Robust accuracy against eps ({norm}); eps 0 is clean accuracy, dashed is the worst case."
            )
            figures.append(f"<figure>{_plot(norm, series)}<figcaption>{_e(caption)}</figcaption></figure>")
    return "<h2>Robust accuracy against eps</h2>" + "".join(figures) if figures else ""


def render_report_html(report: dict[str, Any]) -> str:
    """Render an evasion report as one self-contained HTML page."""
    title = f"Gauntlet {report.get('kind', 'evasion')} report"
    if report.get("model_id") is not None:
        title += f" - model {report['model_id']}"
    attacks = "".join(_attack_section(a) for a in report.get("attacks", []))
    body = (
        f"<h1>{_e(title)}</h1>"
        + _summary(report)
        + _plots(report)
        + _worst_case(report)
        + ("<h2>Attacks</h2>" + attacks if attacks else "")
        + _checks(report)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
