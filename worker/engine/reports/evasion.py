"""The evasion sections of a report page: robust accuracy against eps, the worst case, each attack."""

from collections.abc import Callable
from typing import Any

from worker.engine.reports.chart import Reference, Series, line_chart
from worker.engine.reports.parts import (
    esc,
    figure,
    finite,
    key_values,
    num,
    pct,
    png_img,
    section,
    table,
    value_range,
)

# Attack parameters the page shows elsewhere (the title names the norm and targeting; the input range is
# the evaluation's).
_SHOWN_ELSEWHERE = frozenset({"norm", "targeted", "input_range"})

# Result columns in display order: key, header, formatter. Only columns some row has are shown.
_RESULT_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("eps", "eps", num),
    ("patch_scale", "patch scale", num),
    ("robust_accuracy", "robust accuracy", pct),
    ("attack_success_rate", "success rate", pct),
    ("success_rate", "success rate", pct),
    ("clean_accuracy", "clean accuracy", pct),
    ("n_attacked", "attacked", num),
    ("n_succeeded", "broken", num),
    ("n_eval", "evaluated", num),
    ("mean_perturbation", "mean pert.", num),
    ("median_perturbation", "median pert.", num),
    ("max_perturbation", "max pert.", num),
    ("mean_queries", "mean queries", num),
    ("max_queries", "max queries", num),
    ("seconds", "seconds", lambda value: num(value, 3)),
)


def attack_label(attack: dict[str, Any]) -> str:
    """Human label of an attack entry (unescaped): name, norm where it has one, targeting."""
    name, norm = str(attack.get("name", "?")), attack.get("norm")
    label = name if norm in (None, name) else f"{name} {norm}"
    if attack.get("targeted"):
        label += f" targeted ({attack.get('target_mode') or 'n/a'})"
    return label


def _overview(report: dict[str, Any]) -> str:
    """Samples, clean accuracy and input range."""
    return section(
        "Evaluation",
        key_values(
            [
                ("samples", report.get("n_samples")),
                ("clean accuracy", pct(report.get("clean_accuracy")) if "clean_accuracy" in report else None),
                ("input range", value_range(report.get("input_range"))),
            ]
        ),
    )


def robust_series(report: dict[str, Any], norm: str) -> list[Series]:
    """Robust accuracy against eps per attack of a norm, then the worst case (dashed).

    Only measured points: an attack run at one eps is one point (drawn as a mark), never a line from
    the clean accuracy, which the chart draws as a reference line instead.
    """
    entries = [
        (attack_label(a), a.get("results", []), False)
        for a in report.get("attacks", [])
        if a.get("norm") == norm
    ]
    entries.append(("worst case", [r for r in report.get("worst_case", []) if r.get("norm") == norm], True))
    series = []
    for label, rows, dashed in entries:
        points = sorted(
            (float(r["eps"]), float(r["robust_accuracy"]))
            for r in rows
            if finite(r.get("eps")) and finite(r.get("robust_accuracy"))
        )
        if points:
            series.append(Series(label, points, dashed))
    return series


def clean_reference(report: dict[str, Any]) -> list[Reference]:
    """Clean accuracy as a reference line, when the report has it."""
    clean = report.get("clean_accuracy")
    return [Reference("clean accuracy", float(clean))] if finite(clean) else []


def robust_plots(report: dict[str, Any], title: str = "Robust accuracy against eps") -> str:
    """One robust-accuracy-against-eps figure per norm that has eps results."""
    norms = sorted(
        {
            str(a.get("norm"))
            for a in report.get("attacks", [])
            if any("eps" in r for r in a.get("results", []))
        }
    )
    figures = [
        figure(
            line_chart(
                robust_series(report, norm),
                x_label=f"eps ({norm})",
                y_label="robust accuracy",
                references=clean_reference(report),
            ),
            f"Robust accuracy against eps ({norm}): the dotted line is clean accuracy, the dashed black line "
            "the worst case over attacks; an attack run at a single eps is a single mark.",
        )
        for norm in norms
    ]
    return section(title, *figures)


def worst_case_table(report: dict[str, Any]) -> str:
    """Worst-case robust accuracy per norm and eps; nothing when no attack has an eps."""
    rows = [
        [
            esc(row.get("norm", "")),
            num(row.get("eps")),
            pct(row.get("robust_accuracy")),
            num(row.get("n_attacks")),
        ]
        for row in report.get("worst_case", [])
    ]
    if not rows:
        return ""
    note = "<p>A sample counts as robust only if it stays correctly classified under every attack.</p>"
    return section(
        "Worst case over attacks", note, table(["norm", "eps", "robust accuracy", "attacks"], rows)
    )


def attack_section(attack: dict[str, Any]) -> str:
    """Parameters, per-budget results and images (patches) of one attack."""
    params = key_values(
        (key, value) for key, value in (attack.get("params") or {}).items() if key not in _SHOWN_ELSEWHERE
    )
    results = attack.get("results", [])
    columns = [column for column in _RESULT_COLUMNS if any(row.get(column[0]) is not None for row in results)]
    rows = [[fmt(row.get(key)) for key, _, fmt in columns] for row in results]
    images = "".join(
        png_img(row["png_base64"], f"patch at scale {row.get('patch_scale')}")
        for row in results
        if isinstance(row.get("png_base64"), str)
    )
    threat = f" <small>({esc(attack['threat_model'])})</small>" if attack.get("threat_model") else ""
    return (
        f"<h3>{esc(attack_label(attack))}{threat}</h3>"
        + params
        + table([header for _, header, _ in columns], rows)
        + images
    )


def render_evasion_sections(report: dict[str, Any]) -> str:
    """Every evasion section, in reading order."""
    attacks = "".join(attack_section(a) for a in report.get("attacks", []))
    return _overview(report) + robust_plots(report) + worst_case_table(report) + section("Attacks", attacks)
