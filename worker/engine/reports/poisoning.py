"""The poisoning sections of a report page: success and clean accuracy against the poison rate, each
attack's results, detection, the trigger and poisoned samples beside their originals; or an audit."""

from typing import Any

from app.schemas.reports.poisoning_verdict import flip_drop
from worker.engine.reports.chart import COLORS, Reference, Series, line_chart
from worker.engine.reports.parts import (
    Markup,
    esc,
    figure,
    finite,
    key_values,
    num,
    pct,
    png_img,
    section,
    table,
)
from worker.engine.reports.recipe import applicable
from worker.engine.reports.repair import render_attack_repairs

_SAMPLE_SCALE = 6


def _classes(values: Any) -> str:
    """A list of class indices for people."""
    return esc(", ".join(str(v) for v in values)) if values else "none"


def drops_accuracy(attack: dict[str, Any]) -> bool:
    """Whether the attack's effect is a clean-accuracy drop (untargeted label flips), not a success rate."""
    rows = attack.get("results") or []
    return bool(rows) and all(flip_drop(row) for row in rows)


def rate_series(report: dict[str, Any]) -> list[Series]:
    """Per attack, success rate (solid) and clean accuracy (dashed) against the poison rate; an attack
    whose effect is an accuracy drop has no success series, its drop shows on its clean accuracy."""
    series = []
    for index, attack in enumerate(report.get("attacks", [])):
        rows = attack.get("results", [])
        label, color = f"{index}: {attack.get('name')}", COLORS[index % len(COLORS)]
        if not drops_accuracy(attack):
            success = [
                (float(r["rate"]), float(r["attack_success_rate"]))
                for r in rows
                if finite(r.get("rate")) and finite(r.get("attack_success_rate"))
            ]
            series.append(Series(f"{label} success rate", sorted(success), color=color))
        clean = [
            (float(r["rate"]), float(r["clean_accuracy"]))
            for r in rows
            if finite(r.get("rate")) and finite(r.get("clean_accuracy"))
        ]
        series.append(Series(f"{label} clean accuracy", sorted(clean), dashed=True, color=color))
    return series


def _rate_chart(report: dict[str, Any]) -> str:
    """Success rate and clean accuracy of every attack against the poison rate, beside the baseline."""
    baseline = (report.get("baseline") or {}).get("clean_accuracy")
    references = [Reference("clean baseline accuracy", float(baseline))] if finite(baseline) else []
    chart = line_chart(
        rate_series(report), x_label="poison rate", y_label="share of held-out inputs", references=references
    )
    return figure(
        chart,
        "Per attack (one colour each), the success rate and the poisoned victim's clean accuracy (dashed) "
        "against the poison rate; the "
        "dotted line is the clean baseline. Untargeted label flips have no success rate: their effect is the "
        "accuracy drop, the distance of their clean accuracy below the baseline.",
    )


def _detection_table(rows: list[dict[str, Any]]) -> str:
    """Per rate and detector: flagged classes, precision, recall, F1 and the retrained victim."""
    cells = []
    for row in rows:
        for det in row.get("detection", []):
            removal = det.get("after_removal") or {}
            cells.append(
                [
                    num(row.get("rate")),
                    esc(det.get("name")),
                    _classes(det.get("flagged_classes")),
                    num(det.get("n_suspected")),
                    pct(det.get("precision")),
                    pct(det.get("recall")),
                    pct(det.get("f1")),
                    pct(removal.get("clean_accuracy")),
                    pct(removal.get("attack_success_rate")),
                ]
            )
    headers = [
        "rate",
        "detector",
        "flagged classes",
        "suspected",
        "precision",
        "recall",
        "F1",
        "clean acc. after removal",
        "success after removal",
    ]
    return table(headers, cells) if cells else ""


def _pictures(attack: dict[str, Any]) -> str:
    """The trigger and a few poisoned samples beside their originals."""
    parts = []
    if isinstance(attack.get("trigger_png"), str):
        parts.append(png_img(attack["trigger_png"], "trigger (test time)", scale=_SAMPLE_SCALE))
    for sample in attack.get("samples", []):
        if isinstance(sample.get("original_png"), str) and isinstance(sample.get("poisoned_png"), str):
            parts.append(
                png_img(
                    sample["original_png"],
                    f"#{sample.get('index')} original, label {sample.get('label')}",
                    scale=_SAMPLE_SCALE,
                )
                + png_img(
                    sample["poisoned_png"],
                    f"poisoned, label {sample.get('poisoned_label')}",
                    scale=_SAMPLE_SCALE,
                )
            )
    return f'<div class="images">{"".join(parts)}</div>' if parts else ""


def _results(attack: dict[str, Any]) -> str:
    """Per rate: poisons, clean accuracy, and the success rate (or, for label flips, the accuracy drop)."""
    rows = attack.get("results", [])
    drop = drops_accuracy(attack)
    effect: list[tuple[str, Any]] = (
        [("accuracy drop", lambda r: _points(r.get("accuracy_drop")))]
        if drop
        else [
            ("success rate", lambda r: pct(r.get("attack_success_rate"))),
            ("baseline success", lambda r: pct(r.get("baseline_attack_success_rate"))),
        ]
    )
    columns: list[tuple[str, Any]] = [
        ("rate", lambda r: num(r.get("rate"))),
        ("poisoned", lambda r: num(r.get("n_poisoned"))),
        ("clean acc.", lambda r: pct(r.get("clean_accuracy"))),
        ("baseline clean acc.", lambda r: pct(r.get("baseline_clean_accuracy"))),
        *effect,
        ("max pert. (linf)", lambda r: num(r.get("max_perturbation"))),
        ("labels changed", lambda r: num(r.get("labels_changed"))),
        ("seconds", lambda r: num(r.get("seconds"), 3)),
    ]
    return table([name for name, _ in columns], [[fmt(r) for _, fmt in columns] for r in rows])


def _points(value: Any) -> Markup:
    """A drop in accuracy as percentage points."""
    return esc(f"{100 * value:.1f} points") if finite(value) else Markup("n/a")


def _attack(index: int, attack: dict[str, Any]) -> str:
    """One attack: threat model, parameters, results per rate, trials, detection, pictures."""
    rows = attack.get("results", [])
    trials = [
        [
            num(r.get("rate")),
            num(t.get("target")),
            num(t.get("intended")),
            num(t.get("baseline_predicted")),
            num(t.get("predicted")),
            esc("yes" if t.get("success") else "no"),
        ]
        for r in rows
        for t in r.get("trials", [])
    ]
    trial_table = (
        "<p>Each target was poisoned for and the victim retrained from scratch once per target.</p>"
        + table(
            ["rate", "target sample", "intended", "baseline predicts", "victim predicts", "success"], trials
        )
        if trials
        else ""
    )
    title = (
        f"<h3>{esc(index)}: {esc(attack.get('name'))} <small>({esc(attack.get('paper', ''))})</small></h3>"
    )
    share = "of the target class" if attack.get("rate_of") == "target_class" else "of the training set"
    params = applicable(attack.get("params") or {})
    trigger = applicable(params.pop("trigger", None) or {})
    effect = (
        "<p>The effect of untargeted label flips is the drop in clean accuracy against the clean baseline, "
        "not a success rate.</p>"
        if drops_accuracy(attack)
        else ""
    )
    return (
        title
        + f"<p>{esc(attack.get('threat_model', ''))}; rate is the poisoned share {esc(share)}.</p>"
        + key_values(params.items())
        + key_values((f"trigger {k}", v) for k, v in trigger.items())
        + effect
        + _results(attack)
        + trial_table
        + _detection_table(rows)
        + render_attack_repairs(attack.get("repair") or [])
        + _pictures(attack)
    )


def _baseline(report: dict[str, Any]) -> str:
    """The clean baseline and what each detector says about it."""
    baseline = report.get("baseline", {})
    facts = key_values(
        [
            ("training samples", report.get("n_train")),
            ("held-out samples", report.get("n_eval")),
            ("clean baseline accuracy", pct(baseline.get("clean_accuracy"))),
            ("training recipe", applicable(report.get("training") or {}) or None),
        ]
    )
    detectors = [
        [esc(d.get("name")), esc(d.get("layer", "")), _classes(d.get("flagged_classes"))]
        for d in report.get("detectors", [])
    ]
    clean = (
        "<p>Detectors on the clean training set and the clean baseline (a clean model should get no class "
        "flagged):</p>" + table(["detector", "feature layer", "flagged classes"], detectors)
        if detectors
        else ""
    )
    return section("Clean baseline", facts, clean)


def _audit(report: dict[str, Any]) -> str:
    """Audit mode: per detector, the flagged classes and the most suspicious samples with scores."""
    accuracy = report.get("model_accuracy", {})
    overview = key_values(
        [
            ("training samples", report.get("n_train")),
            ("held-out accuracy", pct(accuracy.get("held_out"))),
            ("training-set accuracy", pct(accuracy.get("training_set"))),
            ("suspected classes", _classes(report.get("suspected_classes"))),
            ("suspected samples", report.get("n_suspected")),
        ]
    )
    parts = []
    for det in report.get("detectors", []):
        classes = [
            [
                num(c.get("class")),
                num(c.get("n_samples")),
                num(c.get("n_suspects")),
                num(c.get("own_share")),
                esc("yes" if c.get("flagged") else "no"),
            ]
            for c in det.get("classes", [])
        ]
        suspects = [
            [num(s.get("index")), num(s.get("label")), num(s.get("score"))]
            for s in det.get("top_suspects", [])
        ]
        parts.append(
            f"<h3>{esc(det.get('name'))} <small>({esc(det.get('paper', ''))})</small></h3>"
            + table(["class", "samples", "suspect group", "own share (gate)", "flagged"], classes)
            + (
                table(["sample index", "label", "score"], suspects)
                if suspects
                else "<p>No sample suspected.</p>"
            )
        )
    return section("Audit of the training set", overview, *parts)


def _scan(report: dict[str, Any]) -> str:
    """Scan mode: per scanner, each class's anomaly index, flag and reversed-trigger success, and advice."""
    parts = []
    for scanner in report.get("scanners", []):
        rows = "".join(
            f"<tr><td>{esc(row['label'])}</td><td>{row['mask_l1']:.2f}</td><td>{row['anomaly_index']:.2f}</td>"
            f"<td>{'flagged' if row['flagged'] else 'no'}</td>"
            f"<td>{100 * row['trigger_success']:.1f}%</td></tr>"
            for row in scanner.get("classes", [])
        )
        parts.append(
            f"<h3>{esc(scanner['name'])} ({esc(scanner['paper'])})</h3>"
            f"<p>{esc(scanner['statistic'])}; threshold {scanner['threshold']:g}.</p>"
            "<table><thead><tr><th>class</th><th>mask l1</th><th>anomaly index</th><th>flagged</th>"
            f"<th>reversed-trigger success</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{esc(scanner['advice'])}</p>"
        )
    return section("Backdoor scan of the model", *parts)


def render_poisoning_sections(report: dict[str, Any]) -> str:
    """Every poisoning section, in reading order."""
    if report.get("mode") == "audit":
        return _audit(report)
    if report.get("mode") == "scan":
        return _scan(report)
    attacks = "".join(_attack(i, a) for i, a in enumerate(report.get("attacks", [])))
    return (
        _baseline(report)
        + section("Success against poison rate", _rate_chart(report))
        + section("Attacks", attacks)
    )
