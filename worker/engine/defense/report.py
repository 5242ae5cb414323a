"""The defense report body: the defense, its training, the side-by-side evaluation, checks and headline."""

from typing import Any

from worker.engine.defense.base import Hardened, Inspection

# Naive and adaptive robust accuracy may differ by this much before gradient masking is flagged.
MASKING_GAP = 0.05


def _by_setting(rows: list[dict[str, Any]]) -> dict[tuple[str, float], float]:
    """Worst-case rows keyed by (norm, eps)."""
    return {(row["norm"], float(row["eps"])): row["robust_accuracy"] for row in rows}


def masking_check(
    naive: list[dict[str, Any]], adaptive: list[dict[str, Any]], n: int
) -> dict[str, Any] | None:
    """Fails when the naive figure exceeds the adaptive one by more than MASKING_GAP (and one sample)."""
    naive_by, adaptive_by = _by_setting(naive), _by_setting(adaptive)
    shared = sorted(set(naive_by) & set(adaptive_by))
    if not shared:
        return None
    tolerance = MASKING_GAP + 1.0 / max(n, 1)
    gaps = [(key, naive_by[key] - adaptive_by[key]) for key in shared]
    problems = [
        f"{k[0]} eps={k[1]:g}: naive {naive_by[k]:.1%} vs adaptive {adaptive_by[k]:.1%}"
        for k, gap in gaps
        if gap > tolerance
    ]
    if problems:
        return {
            "name": "naive_matches_adaptive",
            "passed": False,
            "detail": "; ".join(problems)
            + ". The defense masks gradients: attacks that ignore it overstate its "
            "robustness. Only the adaptive figures (the headline) count.",
        }
    largest = max(gap for _, gap in gaps)
    return {
        "name": "naive_matches_adaptive",
        "passed": True,
        "detail": f"naive minus adaptive robust accuracy is at most {largest:+.1%} ({len(shared)} settings)",
    }


def _curve_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Robust accuracy against eps for the undefended and the defended model (naive, adaptive, worst case)."""
    undefended = _by_setting(evaluation["undefended"]["worst_case"])
    defended = evaluation["defended"]["worst_case"]
    naive, adaptive, worst = (_by_setting(defended[k]) for k in ("naive", "adaptive", "all"))
    return [
        {
            "norm": norm,
            "eps": eps,
            "undefended": undefended.get((norm, eps)),
            "defended_naive": naive.get((norm, eps)),
            "defended_adaptive": adaptive.get((norm, eps)),
            "defended_worst_case": worst[(norm, eps)],
        }
        for norm, eps in sorted(worst)
    ]


def _headline(rows: list[dict[str, Any]], evaluation: dict[str, Any], eps: float | None) -> dict[str, Any]:
    """The headline: the per-sample worst case over every attack on the defended model, at one eps."""
    chosen = next((row for row in rows if eps is not None and abs(row["eps"] - eps) < 1e-12), rows[0])
    return {
        "norm": chosen["norm"],
        "eps": chosen["eps"],
        "clean_accuracy": evaluation["defended"]["clean_accuracy"],
        "robust_accuracy": chosen["defended_worst_case"],
        "naive_robust_accuracy": chosen["defended_naive"],
        "undefended_clean_accuracy": evaluation["undefended"]["clean_accuracy"],
        "undefended_robust_accuracy": chosen["undefended"],
    }


def undefended_source(baseline: dict[str, Any] | None) -> dict[str, Any]:
    """What the undefended side of the evaluation is: the model under test, or a trained baseline."""
    if baseline is None:
        return {
            "source": "model_under_test",
            "description": "the model under test as uploaded, with its own weights",
        }
    return {
        "source": "trained_baseline",
        "description": "a trained baseline: the same architecture from the same fresh weights, trained on "
        "the same training set with the defense's recipe (epochs, batch size, optimizer, learning rate, "
        "schedule) and seed, without the defense (plain cross-entropy); the model's own weights, if any, "
        "are not used (init random)",
        "training": baseline,
    }


def assemble_report(
    *,
    defense: dict[str, Any],
    evaluation: dict[str, Any],
    attacks: list[dict[str, Any]],
    hardened: Hardened,
    inspection: Inspection,
    export_checks: list[dict[str, Any]],
    headline_eps: float | None,
    baseline: dict[str, Any] | None,
    max_samples: int,
) -> dict[str, Any]:
    """The report body (the worker adds the envelope). `baseline` is the training record of a trained
    undefended side (init "random"), None when the undefended side is the model under test."""
    rows = _curve_rows(evaluation)
    defended = evaluation["defended"]["worst_case"]
    checks = list(hardened.checks) + export_checks + list(inspection.checks)
    masking = masking_check(defended["naive"], defended["adaptive"], evaluation["n_samples"])
    checks += ([masking] if masking else []) + evaluation.pop("checks")
    evaluation["undefended"] = {**undefended_source(baseline), **evaluation["undefended"]}
    return {
        "defense": defense,
        "training": hardened.training,
        "evaluation": {
            **evaluation,
            "attacks_requested": attacks,
            "undefended_model": evaluation["undefended"]["description"],
            "max_samples": max_samples,
        },
        "robust_accuracy_vs_eps": rows,
        "headline": _headline(rows, evaluation, headline_eps),
        **hardened.sections,
        **inspection.sections,
        "preprocessing": hardened.preprocessing,
        "checks": checks,
    }
