"""The poisoning sections of a report page: success and clean accuracy against the poison rate, each
attack's results, detection, the trigger and poisoned samples beside their originals; or an audit."""

from typing import Any

from worker.engine.reports.parts import (
    Series,
    esc,
    figure,
    finite,
    key_values,
    line_chart,
    num,
    pct,
    png_img,
    section,
    table,
)

_SAMPLE_SCALE = 6


def _classes(values: Any) -> str:
    """A list of class indices for people."""
    return esc(", ".join(str(v) for v in values)) if values else "none"


def _rate_chart(report: dict[str, Any]) -> str:
    """Success rate (solid) and clean accuracy (dashed) of every attack against the poison rate."""
    series = []
    for index, attack in enumerate(report.get("attacks", [])):
        rows = attack.get("results", [])
        label = f"{index}: {attack.get('name')}"
        success = [
            (r["rate"], r["attack_success_rate"]) for r in rows if finite(r.get("attack_success_rate"))
        ]
        clean = [(r["rate"], r["clean_accuracy"]) for r in rows if finite(r.get("clean_accuracy"))]
        series.append(Series(f"{label} success", sorted(success)))
        series.append(Series(f"{label} clean acc.", sorted(clean), dashed=True))
    chart = line_chart(series, x_label="poison rate", y_label="share")
    return figure(
        chart,
        "Attack success rate (solid) and the victim's clean accuracy (dashed, black) against the poison "
        "rate; for label flips success is the clean-accuracy drop (or the source-to-target rate).",
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


def _attack(index: int, attack: dict[str, Any]) -> str:
    """One attack: threat model, parameters, results per rate, trials, detection, pictures."""
    rows = attack.get("results", [])
    results = [
        [
            num(r.get("rate")),
            num(r.get("n_poisoned")),
            pct(r.get("clean_accuracy")),
            pct(r.get("baseline_clean_accuracy")),
            pct(r.get("attack_success_rate")),
            pct(r.get("baseline_attack_success_rate")),
            num(r.get("max_perturbation")),
            num(r.get("labels_changed")),
            num(r.get("seconds"), 3),
        ]
        for r in rows
    ]
    headers = [
        "rate",
        "poisoned",
        "clean acc.",
        "baseline clean acc.",
        "success rate",
        "baseline success",
        "max pert. (linf)",
        "labels changed",
        "seconds",
    ]
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
    return (
        title
        + f"<p>{esc(attack.get('threat_model', ''))}; rate is the poisoned share {esc(share)}.</p>"
        + key_values(
            (key, value) for key, value in (attack.get("params") or {}).items() if not isinstance(value, dict)
        )
        + key_values(
            ((f"trigger {k}", v) for k, v in (attack.get("params") or {}).get("trigger", {}).items())
        )
        + table(headers, results)
        + trial_table
        + _detection_table(rows)
        + _pictures(attack)
    )


def _baseline(report: dict[str, Any]) -> str:
    """The clean baseline and what each detector says about it."""
    baseline = report.get("baseline", {})
    pairs = [
        ("training samples", report.get("n_train")),
        ("held-out samples", report.get("n_eval")),
        ("clean baseline accuracy", pct(baseline.get("clean_accuracy"))),
    ]
    rows = [[f"<th>{esc(k)}</th>", v if isinstance(v, str) else num(v)] for k, v in pairs if v is not None]
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
    return section("Clean baseline", table(None, rows), clean)


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


def render_poisoning_sections(report: dict[str, Any]) -> str:
    """Every poisoning section, in reading order."""
    if report.get("mode") == "audit":
        return _audit(report)
    attacks = "".join(_attack(i, a) for i, a in enumerate(report.get("attacks", [])))
    return (
        _baseline(report)
        + section("Success against poison rate", _rate_chart(report))
        + section("Attacks", attacks)
    )
