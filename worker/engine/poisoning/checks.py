"""Threat-model checks of a poisoning report, read from what the evaluator measured on the arrays."""

from typing import Any

from worker.engine.poisoning.job import PoisoningJob

_TOLERANCE = 1e-5


def add_attack_checks(job: PoisoningJob, entries: list[dict[str, Any]]) -> None:
    """Exact poison counts, untouched samples outside the poisons, range, eps balls and clean labels."""
    for entry in entries:
        name, rows = entry["name"], entry["results"]
        counts = [(row["n_poisoned"], row["expected_poisons"]) for row in rows]
        job.check(
            f"{name}: poisons exactly the requested share",
            all(got == want for got, want in counts),
            "poisoned / requested per rate: " + ", ".join(f"{got}/{want}" for got, want in counts),
        )
        outside = max(row["changed_outside_declared"] for row in rows)
        job.check(
            f"{name}: only the declared poisons differ from the clean set",
            outside == 0,
            f"{outside} samples changed outside the poison indices",
        )
        job.check(
            f"{name}: poisoned inputs stay in the input range",
            all(row["in_range"] for row in rows),
            f"input range {job.input_range[0]:g} to {job.input_range[1]:g}",
        )
        eps = entry["params"].get("eps")
        if eps is not None:
            worst = max(row["max_perturbation"] for row in rows)
            where = " outside the trigger's pixels" if entry["backdoor"] else ""
            job.check(
                f"{name}: poisons stay within eps",
                worst <= float(eps) + _TOLERANCE,
                f"largest linf perturbation{where} {worst:.4g} (eps {float(eps):g})",
            )
        if entry["clean_label"]:
            changed = max(row["labels_changed"] for row in rows)
            job.check(
                f"{name}: clean-label poisons keep every label",
                changed == 0,
                f"{changed} labels changed",
            )
