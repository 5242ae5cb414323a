"""The defense sections of a report page: headline, side-by-side robustness, curves, certificates."""

from typing import Any

from worker.engine.reports.chart import Reference, Series, line_chart
from worker.engine.reports.evasion import attack_section
from worker.engine.reports.parts import (
    esc,
    figure,
    finite,
    human,
    key_values,
    num,
    pct,
    section,
    table,
)
from worker.engine.reports.recipe import applicable, transforms_text
from worker.engine.reports.repair import render_repair_sections


def _recipe(defense: dict[str, Any]) -> list[tuple[str, Any]]:
    """The defense's recipe, only the fields its method uses, written for people."""
    recipe = applicable(defense)
    if "transforms" in recipe:
        recipe["transforms"] = transforms_text(recipe["transforms"])
    return sorted(recipe.items())


def _headline(report: dict[str, Any]) -> str:
    """The adaptive worst case beside the naive figure and the undefended model, and the recipe."""
    head = report.get("headline") or {}
    naive = head.get("naive_robust_accuracy")
    facts = key_values(
        [
            ("threat model", f"{head.get('norm')} eps {num(head.get('eps'))}" if head else None),
            ("robust accuracy (adaptive, worst case)", pct(head.get("robust_accuracy"))),
            ("naive robust accuracy", pct(naive) if naive is not None else None),
            ("clean accuracy", pct(head.get("clean_accuracy"))),
            ("undefended robust accuracy", pct(head.get("undefended_robust_accuracy"))),
            ("undefended clean accuracy", pct(head.get("undefended_clean_accuracy"))),
            ("undefended model", (report.get("evaluation") or {}).get("undefended_model")),
        ]
    )
    note = (
        "<p>The headline is the per-sample worst case over every attack run against the defended model, "
        "measured on the exported model. A naive figure far above it means the defense masks gradients.</p>"
    )
    return section(
        "Defense", note, facts, "<h3>Recipe</h3>" + key_values(_recipe(report.get("defense") or {}))
    )


def _robust_vs_eps(report: dict[str, Any]) -> str:
    """Robust accuracy against eps for the undefended and the defended model, one chart per norm."""
    rows = report.get("robust_accuracy_vs_eps") or []
    evaluation = report.get("evaluation") or {}
    clean = {
        "undefended": (evaluation.get("undefended") or {}).get("clean_accuracy"),
        "defended": (evaluation.get("defended") or {}).get("clean_accuracy"),
    }
    figures, tables = [], []
    for norm in sorted({row["norm"] for row in rows}):
        mine = [row for row in rows if row["norm"] == norm]
        lines = []
        for key, label, dashed in (
            ("undefended", "undefended", True),
            ("defended_naive", "defended, naive attack", False),
            ("defended_adaptive", "defended, adaptive attack", False),
            ("defended_worst_case", "defended, worst case", False),
        ):
            points = [(float(r["eps"]), float(r[key])) for r in mine if finite(r.get(key))]
            if points:
                lines.append(Series(label, points, dashed))
        references = [
            Reference(f"{side} clean accuracy", float(value))
            for side, value in clean.items()
            if finite(value)
        ]
        figures.append(
            figure(
                line_chart(lines, x_label=f"eps ({norm})", y_label="robust accuracy", references=references),
                f"Robust accuracy against eps ({norm}); the dotted lines are clean accuracy, the dashed "
                "black line the undefended model; an evaluation at a single eps is a single mark.",
            )
        )
        tables.append(
            table(
                ["norm", "eps", "undefended", "naive", "adaptive", "worst case"],
                [
                    [
                        esc(norm),
                        num(r["eps"]),
                        pct(r.get("undefended")),
                        pct(r.get("defended_naive")),
                        pct(r.get("defended_adaptive")),
                        pct(r.get("defended_worst_case")),
                    ]
                    for r in mine
                ],
            )
        )
    return section("Robust accuracy against eps", *figures, *tables)


def _training(report: dict[str, Any]) -> str:
    """Loss, clean and robust accuracy per epoch, and what the overfitting guard did."""
    training = report.get("training") or {}
    curve = training.get("curve") or []
    if not curve:
        return ""
    accuracy = [
        Series(label, [(float(r["epoch"]), float(r[key])) for r in curve if finite(r.get(key))], dashed)
        for key, label, dashed in (
            ("clean_accuracy", "clean (held out)", False),
            ("robust_accuracy", "PGD (held out)", False),
            ("guard_pgd_accuracy", "guard: PGD (training subset)", True),
            ("guard_training_attack_accuracy", "guard: training attack", True),
        )
    ]
    loss = [
        Series(
            "training loss", [(float(r["epoch"]), float(r["loss"])) for r in curve if finite(r.get("loss"))]
        )
    ]
    guard = training.get("guard")
    notes = ""
    if guard:
        fired = guard.get("fired_at")
        notes = (
            f"<p><strong>The catastrophic-overfitting guard fired at epoch {esc(fired['epoch'])}</strong>; "
            f"training stopped and epoch {esc(guard.get('kept_epoch'))} was kept.</p>"
            if guard.get("fired") and fired
            else "<p>The catastrophic-overfitting guard did not fire.</p>"
        )
    facts = key_values(
        (k, applicable(v) if isinstance(v, dict) else v)
        for k, v in applicable(training).items()
        if k not in ("curve", "teacher_curve", "guard")
    )
    return section(
        "Training",
        notes,
        facts,
        figure(line_chart(accuracy, x_label="epoch", y_label="accuracy"), "Accuracy per epoch."),
        figure(line_chart(loss, x_label="epoch", y_label="loss", share=False), "Training loss per epoch."),
    )


def _certification(report: dict[str, Any]) -> str:
    """Certified accuracy against the l2 radius (randomized smoothing)."""
    cert = report.get("certification")
    if not cert:
        return ""
    rows = cert.get("certified_accuracy") or []
    chart = line_chart(
        [Series("certified accuracy", [(float(r["radius"]), float(r["certified_accuracy"])) for r in rows])],
        x_label="l2 radius",
        y_label="certified accuracy",
    )
    facts = key_values(
        (k, pct(v) if k.endswith(("_rate", "_accuracy")) else v)
        for k, v in cert.items()
        if k != "certified_accuracy"
    )
    return section(
        "Certification (randomized smoothing)",
        facts,
        figure(chart, "Share of samples certified correct within each l2 radius."),
        table(
            ["radius", "certified accuracy"], [[num(r["radius"]), pct(r["certified_accuracy"])] for r in rows]
        ),
    )


def _runs(report: dict[str, Any]) -> str:
    """Every attack on the undefended model and on each view of the defended one."""
    evaluation = report.get("evaluation") or {}
    undefended = evaluation.get("undefended") or {}
    title = "Undefended model" + (
        " (trained baseline: same architecture, recipe and data, no defense)"
        if undefended.get("source") == "trained_baseline"
        else ""
    )
    parts = [f"<h3>{esc(title)}</h3>"] + [attack_section(a) for a in undefended.get("attacks", [])]
    for run in (evaluation.get("defended") or {}).get("runs", []):
        parts.append(f"<h3>Defended model, {esc(run.get('role'))} attack on {esc(run.get('view'))}</h3>")
        parts += [attack_section(a) for a in run.get("attacks", [])]
    return section("Attacks", *parts)


def _extras(report: dict[str, Any]) -> str:
    """Saturation of a distilled softmax and the preprocessing of a defended model."""
    parts = []
    if report.get("softmax_saturation"):
        parts.append(key_values(sorted(report["softmax_saturation"].items())))
    if report.get("preprocessing"):
        parts.append(
            table(
                ["transform", "parameters"],
                [
                    [esc(t.get("name")), esc(human({k: v for k, v in t.items() if k != "name"}))]
                    for t in report["preprocessing"]
                ],
            )
        )
    return section("Defended model", *parts)


def render_defense_sections(report: dict[str, Any]) -> str:
    """Every defense section, from the JSON report alone (a backdoor repair has its own)."""
    if report.get("repair"):
        return render_repair_sections(report)
    return "".join(
        (
            _headline(report),
            _robust_vs_eps(report),
            _training(report),
            _certification(report),
            _extras(report),
            _runs(report),
        )
    )
