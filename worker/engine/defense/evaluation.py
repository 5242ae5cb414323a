"""Adaptive evaluation of a defense: undefended and defended side by side, naive beside adaptive.

Attacks run on views of the models (the attacker's gradients: naive, BPDA, EOT, logits), through the
evasion engine. Every figure is then measured again by the evaluator on the deployed model (the
exported ONNX through onnxruntime, behind the real preprocessing where there is one): the robust
accuracy of a row is the share of samples the deployed model still classifies correctly on the
attack's output. The worst case is per sample, and the headline is the worst case over every attack
run against the defended model.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.registry import build_attack
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.evasion.runner import run_evasion
from worker.engine.evasion.sanity_runs import sanity_run_units
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.progress import ProgressCallback, ProgressTracker

Classify = Callable[[np.ndarray], np.ndarray]  # a batch in the input range -> logits
Role = Literal["naive", "adaptive"]
# Index offset of extra attacks, so their random streams differ from the spec attacks'.
_EXTRA_INDEX = 1000


@dataclass
class AttackRun:
    """Attacks on one view of the defended model: what they differentiate and how it is described.

    `sanity_runs` marks the run whose evasion checks the report carries (the sanity runs themselves, the
    extra attacks, run only where the evaluation asks for them).
    """

    role: Role
    view: str
    model: nn.Module
    attacks: list[AttackParamsBase]
    extra: list[tuple[Attack, AttackParamsBase]] = field(default_factory=list)
    sanity_runs: bool = False


def predict_labels(classify: Classify, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The labels a classifier gives a dataset, in batches."""
    labels = [
        np.asarray(classify(np.ascontiguousarray(x[a:b], dtype=np.float32))).argmax(axis=1)
        for a, b in batch_bounds(len(x), batch_size)
    ]
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def module_classifier(model: nn.Module, device: torch.device) -> Classify:
    """A torch module as a NumPy classifier (no gradients)."""

    def classify(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(x, device=device)).float().cpu().numpy()

    return classify


def plain_specs(specs: Sequence[AttackParamsBase]) -> list[dict[str, Any]]:
    """Attack specs as the report's attacks_requested echoes them: the parameters as given (omitted ones
    take the attack's defaults)."""
    return [spec.model_dump(mode="json", exclude_unset=True) for spec in specs]


def _units(
    specs: Sequence[AttackParamsBase], n: int, input_range: tuple[float, float], sanity: bool
) -> float:
    """Work units of one run_evasion call (the runner's own formula)."""
    total = float(n)
    for spec in specs:
        attack = build_attack(spec, input_range)
        total += attack.work_units * n * (1 if attack.minimum_norm else len(spec.eps))
    return total + (sanity_run_units(n, specs) if sanity else 0)


def run_units(
    runs: Sequence[AttackRun],
    attacks: Sequence[AttackParamsBase],
    n: int,
    input_range: tuple[float, float],
    sanity_runs: bool,
) -> float:
    """Work units of a whole evaluation (the undefended run included), for progress weighting."""
    total = _units(attacks, n, input_range, False)
    for run in runs:
        total += _units(run.attacks, n, input_range, run.sanity_runs and sanity_runs)
        total += sum(attack.work_units * n * len(spec.eps) for attack, spec in run.extra)
    return total


def _sub_progress(tracker: ProgressTracker, units: float) -> tuple[ProgressCallback, Callable[[], None]]:
    """A callback mapping a sub-task's fraction onto `units` of the tracker, and one that completes it."""
    done = [0.0]

    def callback(fraction: float, stage: str) -> None:
        target = max(done[0], min(1.0, fraction) * units)
        tracker.advance(target - done[0], stage)
        done[0] = target

    def finish() -> None:
        tracker.advance(units - done[0], "evaluation")
        done[0] = units

    return callback, finish


def _remeasure(
    entry: dict[str, Any], arrays: dict[str, np.ndarray], classify: Classify, y: np.ndarray, *worst: WorstCase
) -> None:
    """Measure each row of an attack entry on the deployed model (one forward pass per eps) and fold it
    into the worst cases."""
    attacked = arrays["attacked"]
    for position, row in enumerate(entry["results"]):
        robust = predict_labels(classify, arrays["x_adv"][position]) == y
        broken = attacked & ~robust
        row["attack_reported_robust_accuracy"] = row["robust_accuracy"]
        row["robust_accuracy"] = float(robust.mean())
        row["n_succeeded"] = int(broken.sum())
        row["attack_success_rate"] = float(broken.sum() / attacked.sum()) if attacked.any() else None
        for case in worst:
            case.add(entry["norm"], float(row["eps"]), robust)


def _evasion(
    model: nn.Module,
    specs: list[AttackParamsBase],
    x: np.ndarray,
    y: np.ndarray,
    *,
    black_box: nn.Module | None,
    sanity: bool,
    settings: dict[str, Any],
    tracker: ProgressTracker,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """One run_evasion call whose progress lands on the tracker."""
    callback, finish = _sub_progress(tracker, _units(specs, len(x), settings["input_range"], sanity))
    outcome = run_evasion(
        model, x, y, specs, black_box=black_box, sanity_runs=sanity, progress=callback, **settings
    )
    finish()
    return outcome.report, outcome.adversarial


def _extra(
    run: AttackRun, x: np.ndarray, y: np.ndarray, settings: dict[str, Any], tracker: ProgressTracker
) -> tuple[list[dict[str, Any]], list[dict[str, np.ndarray]]]:
    """Attacks outside the registry (instances), through the evasion engine's per-attack evaluation."""
    if not run.extra:
        return [], []
    device, batch_size = settings["device"], settings["batch_size"]
    x_all, y_all = (
        torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)),
        torch.as_tensor(y, dtype=torch.long),
    )
    batches = batch_bounds(len(x_all), batch_size)
    with torch.no_grad():
        logits = torch.cat([run.model(x_all[a:b].to(device)).float().cpu() for a, b in batches])
    data = EvaluationData(x_all, y_all, logits, logits.argmax(dim=1) == y_all, batches)
    entries, arrays = [], []
    for number, (attack, spec) in enumerate(run.extra):
        entry, found = evaluate_attack(
            run.model,
            attack,
            spec,
            data,
            index=_EXTRA_INDEX + number,
            seed=settings["seed"],
            device=device,
            progress=tracker,
            worst=WorstCase(len(x_all)),
        )
        entries.append(entry)
        arrays.append(found)
    return entries, arrays


def evaluate_defense(
    *,
    undefended: nn.Module,
    undefended_classify: Classify,
    undefended_black_box: nn.Module | None,
    runs: Sequence[AttackRun],
    deployed_classify: Classify,
    attacks: list[AttackParamsBase],
    x: np.ndarray,
    y: np.ndarray,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    batch_size: int,
    tracker: ProgressTracker,
    sanity_runs: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The evaluation section of a defense report and the adversarial arrays of every run; `sanity_runs`
    False leaves out the sanity runs' extra attacks (the checks of the attacks that ran stay)."""
    settings = {"input_range": input_range, "seed": seed, "device": device, "batch_size": batch_size}
    adversarial: dict[str, dict[str, np.ndarray]] = {}
    report, arrays = _evasion(
        undefended,
        attacks,
        x,
        y,
        black_box=undefended_black_box,
        sanity=False,
        settings=settings,
        tracker=tracker,
    )
    undefended_worst = WorstCase(len(x))
    for entry, (name, found) in zip(report["attacks"], arrays.items(), strict=True):
        _remeasure(entry, found, undefended_classify, y, undefended_worst)
        adversarial[f"undefended_{name}"] = found
    clean = predict_labels(undefended_classify, x) == y
    section: dict[str, Any] = {
        "n_samples": len(x),
        "undefended": {
            "clean_accuracy": float(clean.mean()),
            "attacks": report["attacks"],
            "worst_case": undefended_worst.rows(),
        },
        "defended": {"clean_accuracy": float((predict_labels(deployed_classify, x) == y).mean()), "runs": []},
    }
    worst = {"naive": WorstCase(len(x)), "adaptive": WorstCase(len(x)), "all": WorstCase(len(x))}
    checks: list[dict[str, Any]] = []
    deployed_black_box = QueryOnlyModel(deployed_classify)
    for number, run in enumerate(runs):
        entries, found_arrays = [], []
        if run.attacks:
            report, arrays = _evasion(
                run.model,
                run.attacks,
                x,
                y,
                black_box=deployed_black_box,
                sanity=run.sanity_runs and sanity_runs,
                settings=settings,
                tracker=tracker,
            )
            entries, found_arrays = list(report["attacks"]), list(arrays.values())
            if run.sanity_runs:
                checks += [{**c, "detail": f"[defended, {run.view}] {c['detail']}"} for c in report["checks"]]
        extra_entries, extra_arrays = _extra(run, x, y, settings, tracker)
        entries, found_arrays = entries + extra_entries, found_arrays + extra_arrays
        run_worst = WorstCase(len(x))
        for index, (entry, found) in enumerate(zip(entries, found_arrays, strict=True)):
            _remeasure(entry, found, deployed_classify, y, run_worst, worst[run.role], worst["all"])
            adversarial[f"defended_{run.role}{number}_{entry['name']}_{entry['norm']}_{index}"] = found
        section["defended"]["runs"].append(
            {"role": run.role, "view": run.view, "attacks": entries, "worst_case": run_worst.rows()}
        )
    section["defended"]["worst_case"] = {role: case.rows() for role, case in worst.items()}
    section["checks"] = checks
    return section, adversarial
