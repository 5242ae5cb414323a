"""Sanity checks of an extraction report: budgets kept, the label-only row present, fidelity honest."""

from typing import Any

Check = dict[str, Any]


def _check(name: str, passed: bool, detail: str) -> Check:
    """One check row."""
    return {"name": name, "passed": bool(passed), "detail": detail}


def _budgets_kept(report: dict[str, Any]) -> Check:
    """No attack run sent more queries than the largest budget, and no surrogate saw more than its own."""
    largest = report["budgets"][-1]
    worst = max(row["queries"] for attack in report["attacks"] for row in attack["rows"])
    over = [
        (result["budget"], result["queries"])
        for attack in report["attacks"]
        for row in attack["rows"]
        for result in row["results"]
        if result["queries"] > result["budget"]
    ]
    return _check(
        "queries_within_budget",
        worst <= largest and not over,
        f"at most {worst} queries per run against a largest budget of {largest}, counted by the query layer",
    )


def _label_row(report: dict[str, Any]) -> Check:
    """Every attack has a row where the attacker sees labels only."""
    missing = [a["label"] for a in report["attacks"] if not any(r["sees"] == "label" for r in a["rows"])]
    return _check(
        "label_only_attacker_reported",
        not missing,
        "every attack has a label-only row" if not missing else f"no label-only row for {', '.join(missing)}",
    )


def _above_chance(report: dict[str, Any]) -> Check:
    """Each attack's undefended surrogate at the largest budget beats a constant guess."""
    chance = report["chance_fidelity"]
    final = {a["label"]: a["rows"][0]["results"][-1]["fidelity"] for a in report["attacks"]}
    weak = [f"{label} {value:.3f}" for label, value in final.items() if value <= chance]
    detail = f"constant-guess fidelity {chance:.3f}; " + (
        "every undefended surrogate beats it" if not weak else f"not beaten by {', '.join(weak)}"
    )
    return _check("fidelity_above_chance", not weak, detail)


def _grows(report: dict[str, Any]) -> Check:
    """More queries do not make an undefended surrogate much worse (a 2-point tolerance for noise)."""
    drops = []
    for attack in report["attacks"]:
        results = attack["rows"][0]["results"]
        if results[-1]["fidelity"] < results[0]["fidelity"] - 0.02:
            drops.append(f"{attack['label']} {results[0]['fidelity']:.3f} -> {results[-1]['fidelity']:.3f}")
    detail = (
        "fidelity at the largest budget is at least that at the smallest" if not drops else "; ".join(drops)
    )
    return _check("fidelity_grows_with_budget", not drops, detail)


def _benign(report: dict[str, Any]) -> list[Check]:
    """Each detector stays quiet on the benign evaluation stream."""
    checks = []
    for detector in report["detection"]:
        alarm = detector["benign"]["alarm_at_query"]
        detail = "no alarm on the benign stream" if alarm is None else f"false alarm at benign query {alarm}"
        checks.append(_check(f"{detector['name']}_no_false_alarm", alarm is None, detail))
    return checks


def run_checks(report: dict[str, Any]) -> list[Check]:
    """Every check of the report."""
    return [
        _budgets_kept(report),
        _label_row(report),
        _above_chance(report),
        _grows(report),
        *_benign(report),
    ]
