"""Per kind: the headline figures of a report and the one sentence a security engineer can act on.

Evasion: worst-case robust accuracy per norm and eps, and clean accuracy. Extraction: the best fidelity
at the largest budget per defense. Poisoning: the attack success rate per attack and rate (the accuracy
drop for untargeted label flips) and each detector's F1; an audit: what the detectors flag. Defense: the
defended model's worst-case robust accuracy (adaptive attacks included) beside the undefended one, and
certified accuracy per radius for randomized smoothing. Pure Python, no numpy, no torch.
"""

from collections.abc import Callable
from typing import Any

from app.schemas.reports.figures import Figure, count, in_words, more_samples, number, proportion, share
from app.schemas.reports.poisoning_verdict import poisoning
from app.schemas.reports.repair_verdict import repair

Report = dict[str, Any]
Builder = Callable[[Report], tuple[list[Figure], str]]


def _eps(value: Any) -> str:
    """An eps, radius or rate for people."""
    return f"{value:g}" if number(value) is not None else "n/a"


def _retained(robust: float, clean: float | None) -> str:
    """What a robust accuracy means beside the clean one, and what to do about it."""
    if not clean:
        return "measure clean accuracy too: nothing to compare against"
    lost = max(0.0, 1.0 - robust / clean)
    if lost <= 0.1:
        return "the model holds at this budget; test larger budgets or stronger attacks before relying on it"
    if lost <= 0.5:
        return (
            f"an attacker with this budget turns {share(lost)} of its correct answers wrong; harden it "
            "(a defense job such as adversarial training) if such inputs are in your threat model"
        )
    return (
        f"not robust at this budget (an attacker turns {share(lost)} of its correct answers wrong): do not "
        "expose it to adversarial inputs of this size without a defense such as adversarial training"
    )


def evasion(report: Report) -> tuple[list[Figure], str]:
    """Clean accuracy and the worst case over attacks per norm and eps (patch success otherwise)."""
    n, clean = count(report.get("n_samples")), number(report.get("clean_accuracy"))
    figures = [proportion("clean_accuracy", "clean accuracy", clean, n)] if clean is not None else []
    worst = []
    for row in report.get("worst_case") or []:
        value = number(row.get("robust_accuracy"))
        if value is not None:
            attacks = f"{row.get('n_attacks')} attack" + ("" if row.get("n_attacks") == 1 else "s")
            label = (
                f"robust accuracy at {row.get('norm')} eps {_eps(row.get('eps'))} (worst case of {attacks})"
            )
            worst.append(
                proportion("robust_accuracy", label, value, n, norm=row.get("norm"), eps=row.get("eps"))
            )
    figures += worst
    if not worst:
        for attack in report.get("attacks") or []:
            for row in attack.get("results") or []:
                value = number(row.get("success_rate"))
                if value is not None:
                    label = f"{attack.get('name')} success rate at patch scale {_eps(row.get('patch_scale'))}"
                    figures.append(proportion("attack_success_rate", label, value, count(row.get("n_eval"))))
        if len(figures) > (clean is not None):
            top = max(figures[clean is not None :], key=lambda f: f.value)
            return figures, f"The strongest patch ({top.label}) succeeds on {in_words(top)}"
        return figures, "No attack ran with an eps budget: the report has no robust accuracy to act on"
    largest: dict[str, Figure] = {}
    for figure in worst:
        norm = str(figure.norm)
        if norm not in largest or (figure.eps or 0.0) >= (largest[norm].eps or 0.0):
            largest[norm] = figure
    key = min(largest.values(), key=lambda f: f.value / clean if clean else f.value)
    text = (
        f"At {key.norm} eps {_eps(key.eps)}, {key.value_text()} of inputs stay correct under every attack "
        f"tried ({key.interval_text()}), against {share(clean) if clean is not None else 'n/a'} clean: "
        f"{_retained(key.value, clean)}"
    )
    return figures, text + more_samples(key)


def _defense_name(row: dict[str, Any]) -> str:
    """A defense row of an extraction report for people."""
    name = str(row.get("defense", "?"))
    return {"none": "no defense", "label_only": "labels only"}.get(name, name)


def extraction(report: Report) -> tuple[list[Figure], str]:
    """The best fidelity any attack reached at its largest budget, per defense."""
    n = count(report.get("n_samples"))
    best: dict[str, tuple[float, dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
    for attack in report.get("attacks") or []:
        for row in attack.get("rows") or []:
            results = row.get("results") or []
            value = number(results[-1].get("fidelity")) if results else None
            defense = str(row.get("defense", "?"))
            if value is not None and (defense not in best or value > best[defense][0]):
                best[defense] = (value, attack, row, results[-1])
    figures = [
        proportion(
            "fidelity",
            f"best fidelity at {result.get('queries')} queries against {_defense_name(row)}",
            value,
            n,
        )
        for value, _, row, result in best.values()
    ]
    victim = number(report.get("victim_accuracy"))
    if victim is not None:
        figures.insert(0, proportion("clean_accuracy", "victim accuracy", victim, n))
    if not best:
        return figures, "No extraction attack produced a surrogate: nothing to act on"
    worst = max(best, key=lambda name: (name == "none", best[name][0]))
    value, attack, _, result = best[worst]
    figure = next(f for f in figures if f.metric == "fidelity" and f.value == value)
    chance = number(report.get("chance_fidelity")) or 0.0
    text = (
        f"With {result.get('queries')} queries, {attack.get('label', attack.get('name'))} reproduces "
        f"{in_words(figure)} of the victim's labels against {_defense_name({'defense': worst})} "
        f"(a constant guess gets {share(chance)})"
    )
    defended = [name for name in best if name not in ("none", "label_only")]
    strongest = min(defended, key=lambda name: best[name][0]) if defended else None
    labels = best.get("label_only")
    if strongest is not None and strongest != worst:
        text += f", {share(best[strongest][0])} through {_defense_name({'defense': strongest})}"
    if labels is not None and worst != "label_only":
        text += f" and {share(labels[0])} from labels alone"
    if value - chance < 0.1:
        return figures, text + ": little beyond chance at this budget; re-test with a larger budget"
    if labels is not None and labels[0] >= value - 0.05:
        action = "output defenses cannot stop it; limit and monitor queries per client (e.g. PRADA)"
    else:
        action = "the model can be copied through its API; limit and monitor queries per client"
    return figures, f"{text}: {action}{more_samples(figure)}"


def _defense_label(defense: dict[str, Any]) -> str:
    """A defense recipe's name for people."""
    name = str(defense.get("name", "the defense")).replace("_", " ")
    return f"{name} ({defense['method']})" if defense.get("method") else name


def _defense_figures(report: Report, n: int | None) -> list[Figure]:
    """Clean accuracies, robust accuracy of both sides at every eps, certified accuracy per radius."""
    head, figures = report.get("headline") or {}, []
    for key, label in (
        ("clean_accuracy", "defended clean accuracy"),
        ("undefended_clean_accuracy", "undefended clean accuracy"),
    ):
        if number(head.get(key)) is not None:
            figures.append(proportion(key, label, head[key], n))
    for row in report.get("robust_accuracy_vs_eps") or []:
        where = f"{row.get('norm')} eps {_eps(row.get('eps'))}"
        for column, metric, label in (
            (
                "defended_worst_case",
                "robust_accuracy",
                f"defended robust accuracy at {where} (worst case, adaptive included)",
            ),
            ("undefended", "undefended_robust_accuracy", f"undefended robust accuracy at {where}"),
        ):
            if number(row.get(column)) is not None:
                figures.append(
                    proportion(metric, label, row[column], n, norm=row.get("norm"), eps=row.get("eps"))
                )
    cert = report.get("certification") or {}
    for row in cert.get("certified_accuracy") or []:
        label = f"certified accuracy at l2 radius {_eps(row.get('radius'))}"
        figures.append(
            proportion(
                "certified_accuracy",
                label,
                row["certified_accuracy"],
                count(cert.get("n_samples")),
                norm="l2",
                eps=row.get("radius"),
            )
        )
    return figures


def defense(report: Report) -> tuple[list[Figure], str]:
    """The defended model beside the undefended one at every eps, and certificates for smoothing; a
    backdoor repair's attack success and clean accuracy before and after."""
    if report.get("repair"):
        return repair(report)
    head, evaluation = report.get("headline") or {}, report.get("evaluation") or {}
    n = count(evaluation.get("n_samples"))
    figures = _defense_figures(report, n)
    name = _defense_label(report.get("defense") or {})
    robust, undefended = number(head.get("robust_accuracy")), number(head.get("undefended_robust_accuracy"))
    certified = [f for f in figures if f.metric == "certified_accuracy" and (f.eps or 0) > 0]
    cert_text = (
        f"; it certifies {in_words(certified[0])} at l2 radius {_eps(certified[0].eps)}" if certified else ""
    )
    if robust is None or undefended is None:
        return figures, f"{name[0].upper()}{name[1:]} has no robust-accuracy headline{cert_text}"
    defended = proportion("robust_accuracy", "", robust, n)
    baseline = (
        " (a trained baseline)"
        if (evaluation.get("undefended") or {}).get("source") == "trained_baseline"
        else ""
    )
    clean_before = share(head.get("undefended_clean_accuracy") or 0.0)
    text = (
        f"{name[0].upper()}{name[1:]} moves worst-case robust accuracy at {head.get('norm')} eps "
        f"{_eps(head.get('eps'))} from {share(undefended)} undefended{baseline} to {in_words(defended)}, "
        f"with clean accuracy {clean_before} → {share(head.get('clean_accuracy') or 0.0)}{cert_text}"
    )
    naive = number(head.get("naive_robust_accuracy"))
    masked = any(
        c.get("name") == "naive_matches_adaptive" and not c.get("passed") for c in report.get("checks") or []
    )
    if naive is not None and masked:
        text += (
            f"; a naive attack reports {share(naive)}: gradients are masked, trust only the adaptive figure"
        )
    if defended.low is not None and defended.low > undefended:
        action = "a real gain at this budget; deploy the defended model if its clean accuracy is acceptable"
        return figures, f"{text}: {action}"
    if robust > undefended:
        return (
            figures,
            f"{text}: the gain is within the noise of {n} samples; evaluate more before deploying it",
        )
    return figures, f"{text}: no gain at this budget; do not rely on it for robustness"


KINDS: dict[str, Builder] = {
    "evasion": evasion,
    "extraction": extraction,
    "poisoning": poisoning,
    "defense": defense,
}
