"""Join the slices of an evasion evaluation and compute, once over all samples, the report.

Metrics, the per-sample worst case, the report checks and the sanity runs (an unbounded attack, a
doubled budget, AutoAttack fast vs standard) all see the joined per-sample outcomes, so a report
does not depend on how many slices the samples were split into, nor on their order.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase, EvasionAttackSpec
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import attack_entry
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.registry import build_attack
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.evasion.outcome import EvasionOutcome
from worker.engine.evasion.patch_eval import physical_evaluation
from worker.engine.evasion.sanity_checks import run_checks
from worker.engine.evasion.sanity_runs import sanity_run_checks
from worker.engine.evasion.slices import EvasionSlice, join_slices
from worker.engine.progress import ProgressTracker


def build_attacks(
    attacks: Sequence[EvasionAttackSpec], input_range: tuple[float, float]
) -> dict[int, Attack]:
    """The eps-bounded attacks of a spec list by position (physical-world attacks run apart)."""
    return {
        index: build_attack(spec, input_range)
        for index, spec in enumerate(attacks)
        if isinstance(spec, AttackParamsBase) and physical_evaluation(spec) is None
    }


def merge_evasion(
    model: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[EvasionAttackSpec],
    parts: Sequence[EvasionSlice],
    *,
    input_range: tuple[float, float],
    batch_size: int,
    seed: int,
    device: torch.device,
    tracker: ProgressTracker,
    sanity_runs: bool,
    judge: nn.Module | None = None,
) -> EvasionOutcome:
    """The report and arrays of the evaluation whose slices are `parts` (models prepared, in eval mode).

    Physical-world attacks (patches), which train on the whole set, run here, as do the sanity runs (judged
    by `judge` when given).
    """
    joined = join_slices(parts)
    if joined.start != 0 or len(joined.logits) != len(x):
        raise ValueError(f"the slices cover {len(joined.logits)} of {len(x)} samples")
    x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.as_tensor(y, dtype=torch.long)
    logits = torch.as_tensor(joined.logits)
    clean_correct = logits.argmax(dim=1) == y_all
    data = EvaluationData(x_all, y_all, logits, clean_correct, batch_bounds(len(x_all), batch_size))
    built = build_attacks(attacks, input_range)
    worst = WorstCase(len(x_all))
    entries, adversarial, per_attack, images = [], {}, [], {}
    for index, spec in enumerate(attacks):
        evaluate_physical = physical_evaluation(spec)
        if evaluate_physical is not None:
            assert model is not None
            patch = evaluate_physical(
                model, x, y, spec, index=index, input_range=input_range, seed=seed, device=device,
                progress=tracker,
            )  # fmt: skip
            entries.append(patch.entry)
            per_attack.append(patch.arrays)
            adversarial[f"patch_{index}"] = patch.arrays
            images |= {f"patch_{index}_{name}": png for name, png in patch.images.items()}
            continue
        attack, part = built[index], joined.attacks[index]
        assert isinstance(spec, AttackParamsBase)
        entries.append(attack_entry(attack, spec, part, worst))
        per_attack.append(part.arrays)
        adversarial[f"adversarial_{attack.name}_{attack.norm}_{index}"] = part.arrays
    extra_checks = []
    if sanity_runs:
        extra_checks = sanity_run_checks(
            model, data, attacks, per_attack, input_range=input_range, seed=seed, device=device,
            progress=tracker, judge=judge,
        )  # fmt: skip
    report: dict[str, Any] = {
        "n_samples": len(x_all),
        "clean_accuracy": float(clean_correct.double().mean()),
        "input_range": [float(input_range[0]), float(input_range[1])],
        "attacks": entries,
        "worst_case": worst.rows(),
    }
    report["checks"] = run_checks(report) + extra_checks
    return EvasionOutcome(report=report, adversarial=adversarial, images=images)
