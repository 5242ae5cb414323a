"""The poisoning report's headline: per attack and rate the success rate (the clean-accuracy drop for
untargeted label flips, whose effect is a drop, not a success), each detector's F1, and a verdict; in
audit mode, what the detectors flag in the training set. Pure Python, no numpy, no torch."""

from dataclasses import dataclass, field
from typing import Any

from app.schemas.reports.figures import Figure, count, difference_interval, more_samples, number, proportion

Report = dict[str, Any]
GOOD_F1 = 0.8  # a detector at least this good is worth running before every training run


def flip_drop(row: dict[str, Any]) -> bool:
    """Whether a result's effect is a clean-accuracy drop (untargeted label flips) rather than a success."""
    return "accuracy_drop" in row and "source_to_target_rate" not in row


@dataclass
class _Effect:
    """One attack at one rate: its headline figure, its detectors' F1 figures, and where it came from."""

    figure: Figure
    attack: dict[str, Any]
    row: dict[str, Any]
    detection: list[Figure] = field(default_factory=list)


def _effect(
    attack: dict[str, Any], row: dict[str, Any], baseline: float | None, n_eval: int | None
) -> _Effect | None:
    """The figure of one result row: an accuracy drop with Newcombe's interval, or a success rate."""
    name, rate = str(attack.get("name")), f"poison rate {row.get('rate')}"
    clean, success = number(row.get("clean_accuracy")), number(row.get("attack_success_rate"))
    if flip_drop(row) and clean is not None and baseline is not None:
        low, high = difference_interval(baseline, clean, n_eval) if n_eval else (None, None)
        figure = Figure(
            metric="accuracy_drop",
            label=f"{name} clean-accuracy drop at {rate}",
            value=baseline - clean,
            unit="points",
            n=n_eval,
            low=low,
            high=high,
            eps=row.get("rate"),
        )
    elif success is not None:
        trials = row.get("trials")
        n, of = (len(trials), "targets") if trials else (count(row.get("n_triggered")), "triggered inputs")
        label = f"{name} success rate at {rate}"
        figure = proportion("attack_success_rate", label, success, n, n_of=of, eps=row.get("rate"))
    else:
        return None
    detection = [
        Figure(
            metric="detection_f1",
            label=f"{det.get('name')} F1 against {name} at {rate}",
            value=det["f1"],
            unit="score",
            n=count(row.get("n_poisoned")),
            n_of="poisons",
        )
        for det in row.get("detection") or []
        if number(det.get("f1")) is not None
    ]
    return _Effect(figure, attack, row, detection)


def _effects(report: Report) -> tuple[list[Figure], list[_Effect]]:
    """The clean baseline's figure and every attack's effects."""
    n_eval = count(report.get("n_eval"))
    baseline = number((report.get("baseline") or {}).get("clean_accuracy"))
    figures = [proportion("clean_accuracy", "clean baseline accuracy", baseline, n_eval)] if baseline else []
    effects = [
        effect
        for attack in report.get("attacks") or []
        for row in attack.get("results") or []
        if (effect := _effect(attack, row, baseline, n_eval)) is not None
    ]
    return figures, effects


def _what(effect: _Effect) -> str:
    """The attack, its rate and how many samples it poisoned."""
    attack, row = effect.attack, effect.row
    whole = "the target class" if attack.get("rate_of") == "target_class" else "the training set"
    poisoned = f" ({row['n_poisoned']} samples)" if count(row.get("n_poisoned")) else ""
    return f"{attack.get('name')} poisoning {100 * float(row.get('rate') or 0):g}% of {whole}{poisoned}"


def _found(effect: _Effect) -> tuple[str, Figure | None]:
    """How well the best detector finds this attack's poisons."""
    if not effect.detection:
        return "; no detector ran", None
    best = max(effect.detection, key=lambda f: f.value)
    return f"; {best.label.split(' F1 ')[0]} finds its poisons with F1 {best.value:.2f}", best


def poisoning(report: Report) -> tuple[list[Figure], str]:
    """The strongest attack, what it costs the victim and whether a detector finds it; or the audit."""
    if report.get("mode") == "audit":
        return audit(report)
    if report.get("mode") == "scan":
        return scan(report)
    figures, effects = _effects(report)
    figures += [f for effect in effects for f in (effect.figure, *effect.detection)]
    successes = [e for e in effects if e.figure.metric == "attack_success_rate"]
    if successes:
        top = max(successes, key=lambda e: e.figure.value)
        found, best = _found(top)
        drop = number(top.row.get("clean_accuracy_drop"))
        cost = (
            f", costing {100 * drop:.1f} points of clean accuracy"
            if drop is not None and drop >= 0.005
            else ", without costing clean accuracy (a validation-accuracy check would not notice)"
            if drop is not None
            else ""
        )
        text = (
            f"{_what(top)} succeeds on {top.figure.value_text()} of its {top.figure.n_of} "
            f"({top.figure.interval_text()}){cost}{found}"
        )
        if best is not None and best.value >= GOOD_F1:
            return figures, f"{text}: screen training data with that detector before every training run"
        if top.figure.value >= 0.5:
            return (
                figures,
                f"{text}: detection is not enough, so control and audit where training data comes from",
            )
        return (
            figures,
            f"{text}: weak at this rate; test larger rates before concluding{more_samples(top.figure)}",
        )
    drops = [e for e in effects if e.figure.metric == "accuracy_drop"]
    if drops:
        top = max(drops, key=lambda e: e.figure.value)
        found, _ = _found(top)
        text = (
            f"{_what(top)} lowers clean accuracy by {top.figure.value_text().lstrip('+')} "
            f"({top.figure.interval_text()}){found}"
        )
        if top.figure.low is not None and top.figure.low > 0:
            return figures, f"{text}: validate labels (a label audit or a trusted subset) before training"
        return figures, f"{text}: no measurable drop, the model tolerates label noise at this rate"
    return figures, "No poisoning attack produced a result: nothing to act on"


def audit(report: Report) -> tuple[list[Figure], str]:
    """An audit: the model's accuracies and what the detectors flag in the training set."""
    accuracy, n_train = report.get("model_accuracy") or {}, count(report.get("n_train"))
    figures = []
    for key, label, n in (
        ("held_out", "held-out accuracy", count(report.get("n_eval"))),
        ("training_set", "training-set accuracy", n_train),
    ):
        value = number(accuracy.get(key))
        if value is not None:
            figures.append(proportion("clean_accuracy", label, value, n))
    suspected = count(report.get("n_suspected")) or 0
    figures.append(
        Figure(metric="suspected_samples", label="suspected samples", value=suspected, unit="count")
    )
    classes = report.get("suspected_classes") or []
    if not classes:
        return figures, (
            f"No detector flags a class among {n_train} training samples: no sign of a dirty-label backdoor "
            "(clean-label poisons can still evade these detectors)"
        )
    flagging = [
        str(d.get("name"))
        for d in report.get("detectors") or []
        if any(c.get("flagged") for c in d.get("classes") or [])
    ]
    return figures, (
        f"{', '.join(flagging) or 'A detector'} flags class {', '.join(str(c) for c in classes)} "
        f"({suspected} suspected of {n_train} training samples): inspect those samples (the "
        "suspected_indices artifact) and remove confirmed poisons before training on this set"
    )


def scan(report: Report) -> tuple[list[Figure], str]:
    """A model scan: per scanner the most anomalous class's reversed-trigger success, and the advice."""
    n_eval = count(report.get("n_eval"))
    figures = []
    for section in report.get("scanners") or []:
        rows = section.get("classes") or []
        shown = set(section.get("triggers_shown") or [])
        for row in rows:
            if row.get("label") in shown:
                value = number(row.get("trigger_success"))
                if value is not None:
                    label = f"{section.get('name')}: class {row.get('label')} reversed-trigger success"
                    figures.append(proportion("attack_success_rate", label, value, n_eval))
    flagged = report.get("suspected_classes") or []
    advice = next((s.get("advice") for s in report.get("scanners") or [] if s.get("flagged_classes")), None)
    if flagged:
        return figures, str(
            advice or f"A backdoor towards class {flagged} is suspected: repair or replace the model"
        )
    return figures, "No scanner flags a class: no sign of an all-to-one backdoor with a small trigger"
