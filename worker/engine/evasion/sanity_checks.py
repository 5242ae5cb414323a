"""Sanity checks of careful robustness evaluation, computed from report data alone.

Each check takes a report dict (the shape `run_evasion` produces) and returns
{"name", "passed", "detail"}, or None when it does not apply (for example fewer than two eps
values, or no FGSM/PGD pair at the same norm and eps). A failing check's detail says what the
failure suggests.
"""

from collections.abc import Callable
from typing import Any

Check = dict[str, Any]

# Float slack on top of the one-sample tolerance.
_FLOAT_SLACK = 1e-9


def _tolerance(report: dict[str, Any]) -> float:
    """One sample's worth of accuracy."""
    n = int(report.get("n_samples") or 0)
    return (1.0 / n if n else 0.0) + _FLOAT_SLACK


def _label(attack: dict[str, Any]) -> str:
    """Short human label of an attack entry."""
    targeted = " targeted" if attack.get("targeted") else ""
    return f"{attack.get('name')} {attack.get('norm')}{targeted}"


def check_accuracy_falls_with_eps(report: dict[str, Any]) -> Check | None:
    """Per attack, robust accuracy must not rise as eps grows (tolerance: one sample)."""
    tolerance = _tolerance(report)
    problems: list[str] = []
    checked = 0
    for attack in report.get("attacks", []):
        rows = sorted(attack.get("results", []), key=lambda row: row["eps"])
        if len(rows) < 2:
            continue
        checked += 1
        for low, high in zip(rows, rows[1:], strict=False):
            if high["robust_accuracy"] > low["robust_accuracy"] + tolerance:
                problems.append(
                    f"{_label(attack)}: {low['robust_accuracy']:.4f} at eps={low['eps']:g} rises to "
                    f"{high['robust_accuracy']:.4f} at eps={high['eps']:g}"
                )
    if not checked:
        return None
    if problems:
        detail = (
            "; ".join(problems) + ". A larger budget should never help the model: this suggests gradient "
            "masking or obfuscation, too few steps, or a step size badly matched to eps."
        )
        return {"name": "accuracy_falls_with_eps", "passed": False, "detail": detail}
    detail = f"robust accuracy does not rise with eps for any of {checked} attack(s) with several eps values"
    return {"name": "accuracy_falls_with_eps", "passed": True, "detail": detail}


def _compatible(attack: dict[str, Any]) -> tuple[Any, ...]:
    """Key under which FGSM and PGD results may be compared."""
    return (attack.get("norm"), bool(attack.get("targeted")), attack.get("target_mode"))


# How far (in accuracy) a black-box attack may beat the white-box ones before masking is suspected.
BLACK_BOX_SLACK = 0.01


def _best_by_setting(
    report: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> dict[tuple[Any, ...], float]:
    """Lowest robust accuracy per (norm, targeting, eps) over the attacks `keep` accepts."""
    best: dict[tuple[Any, ...], float] = {}
    for attack in report.get("attacks", []):
        if not keep(attack):
            continue
        for row in attack.get("results", []):
            key = (*_compatible(attack), float(row["eps"]))
            best[key] = min(best.get(key, 1.0), row["robust_accuracy"])
    return best


def _is_white_box(attack: dict[str, Any]) -> bool:
    """A gradient-based attack that is not an ensemble."""
    return attack.get("threat_model", "white-box") == "white-box" and not attack.get("ensemble", False)


def _compare(
    report: dict[str, Any],
    name: str,
    strong: dict[tuple[Any, ...], float],
    weak: dict[tuple[Any, ...], float],
    labels: tuple[str, str],
    failure_hint: str,
    slack: float = 0.0,
) -> Check | None:
    """Check that the `strong` family is at least as strong as the `weak` one wherever both ran.

    The tolerance is one sample, or `slack` (a share of samples) when that is larger.
    """
    tolerance = max(_tolerance(report), slack)
    pairs = sorted(set(strong) & set(weak), key=str)
    if not pairs:
        return None
    problems = [
        f"{key[0]} eps={key[3]:g}: {labels[0]} {strong[key]:.4f} > {labels[1]} {weak[key]:.4f}"
        for key in pairs
        if strong[key] > weak[key] + tolerance
    ]
    if problems:
        return {"name": name, "passed": False, "detail": "; ".join(problems) + ". " + failure_hint}
    detail = f"{labels[0]} robust accuracy <= {labels[1]} at all {len(pairs)} shared (norm, eps) settings"
    return {"name": name, "passed": True, "detail": detail}


def check_iterative_beats_single_step(report: dict[str, Any]) -> Check | None:
    """Iterative white-box attacks must be at least as strong as FGSM (one sample of slack)."""
    return _compare(
        report,
        "iterative_beats_single_step",
        _best_by_setting(report, lambda a: _is_white_box(a) and a.get("iterative", True)),
        _best_by_setting(report, lambda a: _is_white_box(a) and not a.get("iterative", True)),
        ("iterative", "fgsm"),
        "An iterative attack losing to a single step suggests gradient masking (for example a saturated or "
        "non-smooth loss surface), or a step size or step count that does not fit the budget.",
    )


def check_white_box_beats_black_box(report: dict[str, Any]) -> Check | None:
    """White-box attacks must be at least as strong as black-box ones, within 1 point of accuracy.

    Different attacks break different samples, so a black-box attack may find a few more than the
    gradient attacks (the worst case counts them); gradient masking shows as a gap of many points.
    """
    return _compare(
        report,
        "white_box_beats_black_box",
        _best_by_setting(report, _is_white_box),
        _best_by_setting(report, lambda a: a.get("threat_model") == "black-box"),
        ("white-box", "black-box"),
        "A query-only attack beating the gradient-based ones is the classic sign of gradient masking or "
        "obfuscated gradients: the gradients mislead, so white-box numbers overstate robustness. Trust the "
        "lower (worst-case) numbers and consider adaptive attacks (e.g. BPDA, EOT).",
        slack=BLACK_BOX_SLACK,
    )


def check_robust_below_clean(report: dict[str, Any]) -> Check | None:
    """No robust accuracy (per attack or worst case) may exceed clean accuracy."""
    clean = report.get("clean_accuracy")
    if clean is None:
        return None
    problems = [
        f"{_label(attack)} eps={row['eps']:g}: {row['robust_accuracy']:.4f}"
        for attack in report.get("attacks", [])
        for row in attack.get("results", [])
        if row["robust_accuracy"] > clean + _FLOAT_SLACK
    ]
    problems += [
        f"worst case {row.get('norm')} eps={row['eps']:g}: {row['robust_accuracy']:.4f}"
        for row in report.get("worst_case", [])
        if row["robust_accuracy"] > clean + _FLOAT_SLACK
    ]
    if problems:
        detail = (
            f"robust accuracy above clean accuracy {clean:.4f}: " + "; ".join(problems) + ". An attack must "
            "never help: this suggests randomness in the model (dropout or batch statistics left in training "
            "mode) or an inconsistency between the clean and the attacked evaluation."
        )
        return {"name": "robust_below_clean", "passed": False, "detail": detail}
    return {
        "name": "robust_below_clean",
        "passed": True,
        "detail": f"every robust accuracy <= clean {clean:.4f}",
    }


def check_perturbation_within_budget(report: dict[str, Any]) -> Check | None:
    """The largest measured perturbation must not exceed eps (relative float tolerance 1e-4)."""
    problems = [
        f"{_label(attack)} eps={row['eps']:g}: max perturbation {row['max_perturbation']:.6g}"
        for attack in report.get("attacks", [])
        for row in attack.get("results", [])
        if row.get("max_perturbation") is not None
        and row["max_perturbation"] > row["eps"] * (1 + 1e-4) + 1e-6
    ]
    if not any(
        row.get("max_perturbation") is not None
        for a in report.get("attacks", [])
        for row in a.get("results", [])
    ):
        return None
    if problems:
        detail = "; ".join(problems) + ". The attack left its threat model: results overstate the attack."
        return {"name": "perturbation_within_budget", "passed": False, "detail": detail}
    return {
        "name": "perturbation_within_budget",
        "passed": True,
        "detail": "every perturbation lies within eps",
    }


CHECKS: tuple[Callable[[dict[str, Any]], Check | None], ...] = (
    check_accuracy_falls_with_eps,
    check_iterative_beats_single_step,
    check_white_box_beats_black_box,
    check_robust_below_clean,
    check_perturbation_within_budget,
)


def run_checks(report: dict[str, Any]) -> list[Check]:
    """Every applicable check on the report's eps-bounded attacks, in a fixed order."""
    bounded = {
        **report,
        "attacks": [a for a in report.get("attacks", []) if a.get("threat_model") != "physical"],
    }
    return [check for check in (run(bounded) for run in CHECKS) if check is not None]
