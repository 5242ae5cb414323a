"""The headline of a backdoor repair (a defense report with a repair section): clean accuracy and attack
success before and after, with the supplied trigger when there is one and with the reversed triggers, and
whether the scan still flags a class. Pure Python, no numpy, no torch."""

from typing import Any

from app.schemas.reports.figures import Figure, count, number, proportion, share

Report = dict[str, Any]
REMOVED = 0.05  # attack success at most this: the backdoor counts as removed (the target)
KEPT = 0.02  # clean accuracy may fall this much for the repair to count as keeping it


def _success(figures: dict[str, Any]) -> tuple[str, float | None]:
    """The trigger a verdict reads: the supplied one, else the strongest reversed one."""
    real = number(figures.get("real_trigger_success"))
    if real is not None:
        return "the supplied trigger", real
    reversed_ = [number(v) for v in (figures.get("reversed_trigger_success") or {}).values()]
    values = [v for v in reversed_ if v is not None]
    return "the reversed trigger", max(values) if values else None


def _figures(section: dict[str, Any]) -> list[Figure]:
    """Clean accuracy and attack success of the upload (undefended_*) and of the repaired model."""
    n = count(section.get("n_held_out"))
    figures = []
    for side, prefix in (("after", ""), ("before", "undefended_")):
        figures_ = section.get(side) or {}
        where = "repaired" if side == "after" else "uploaded"
        clean = number(figures_.get("clean_accuracy"))
        if clean is not None:
            figures.append(proportion(f"{prefix}clean_accuracy", f"{where} model clean accuracy", clean, n))
        real = number(figures_.get("real_trigger_success"))
        if real is not None:
            label = f"{where} model: success of the supplied trigger"
            figures.append(proportion(f"{prefix}attack_success_rate", label, real, None))
        for label, value in sorted((figures_.get("reversed_trigger_success") or {}).items()):
            if number(value) is not None:
                text = f"{where} model: success of the reversed trigger of class {label}"
                figures.append(proportion(f"{prefix}reversed_trigger_success", text, float(value), None))
    return figures


def repair(report: Report) -> tuple[list[Figure], str]:
    """Success and clean accuracy before and after; whether the backdoor is gone and the model kept."""
    section = report.get("repair") or {}
    method = str((section.get("method") or {}).get("name", "the repair")).replace("_", " ")
    before, after = section.get("before") or {}, section.get("after") or {}
    figures = _figures(section)
    trigger, success_after = _success(after)
    _, success_before = _success(before)
    clean_before, clean_after = number(before.get("clean_accuracy")), number(after.get("clean_accuracy"))
    if success_after is None or success_before is None or clean_before is None or clean_after is None:
        return figures, f"The {method} repair has no before-and-after figures to act on"
    flagged = (section.get("scan_after") or {}).get("flagged") or []
    text = (
        f"Backdoor repair ({method}) moves the success of {trigger} from {share(success_before)} to "
        f"{share(success_after)}, with clean accuracy {share(clean_before)} → {share(clean_after)}"
    )
    if flagged:
        text += f"; Neural Cleanse still flags class {', '.join(str(c) for c in flagged)}"
    kept = clean_after >= clean_before - KEPT
    if success_after <= REMOVED and kept and not flagged:
        action = "the backdoor is removed at this measure; deploy the repaired model and keep scanning"
    elif success_after <= REMOVED and not flagged:
        action = (
            "the backdoor is removed but clean accuracy fell; retry with a larger clean set or fewer epochs"
        )
    else:
        action = (
            "the backdoor survives; do not deploy the model, try another method (neural_cleanse or anp) or a "
            "larger clean set"
        )
    if trigger == "the reversed trigger" and success_after <= REMOVED:
        action += " (measured with the reversed trigger only: give the real trigger when it is known)"
    return figures, f"{text}: {action}"
