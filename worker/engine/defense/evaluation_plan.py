"""What a defense evaluation attacks and judges: the attack runs, the plan, and progress weighting."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.sanity_runs import sanity_run_units
from worker.engine.progress import ProgressCallback, ProgressTracker

Classify = Callable[[np.ndarray], np.ndarray]  # a batch in the input range -> logits
Role = Literal["naive", "adaptive"]


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


@dataclass
class EvaluationPlan:
    """Everything an evaluation needs besides the samples: the undefended side (its module for gradients,
    its deployed classifier as judge, its black-box form), the runs on the defended model, the deployed
    defended classifier (`deployed`: the judge of every defended figure; `deployed_search`: what black-box
    attacks query, the same defense drawing from its own stream; default: `deployed`), the attack specs and
    the settings. `sanity_runs` False leaves out the sanity runs' extra attacks."""

    undefended: nn.Module
    undefended_classify: Classify
    undefended_black_box: nn.Module | None
    runs: Sequence[AttackRun]
    deployed: Classify
    attacks: list[AttackParamsBase]
    input_range: tuple[float, float]
    seed: int
    device: torch.device
    batch_size: int
    sanity_runs: bool = True
    deployed_search: Classify | None = None


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


def evasion_units(specs: Sequence[AttackParamsBase], n: int, sanity: bool) -> float:
    """Work units of one side's evasion on n samples (the runner's own formula: each spec's passes)."""
    total = float(n) + sum(spec.passes_per_sample() * spec.runs() * n for spec in specs)
    return total + (sanity_run_units(n, specs) if sanity else 0)


def run_units(
    runs: Sequence[AttackRun],
    attacks: Sequence[AttackParamsBase],
    n: int,
    sanity_runs: bool,
) -> float:
    """Work units of a whole evaluation (the undefended run included), for progress weighting."""
    total = evasion_units(attacks, n, False)
    for run in runs:
        total += evasion_units(run.attacks, n, run.sanity_runs and sanity_runs)
        total += sum(spec.passes_per_sample() * spec.runs() * n for _, spec in run.extra)
    return total


def sub_progress(tracker: ProgressTracker, units: float) -> tuple[ProgressCallback, Callable[[], None]]:
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
