"""The physical-world patch inside an evasion evaluation: the spec's run, progress and seeding."""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import EvasionAttackSpec, PatchParams
from worker.engine.evasion.patch import PatchOutcome, run_patch_attack
from worker.engine.progress import ProgressTracker


def patch_units(spec: PatchParams) -> int:
    """Forward-and-backward passes of a patch run, for progress weighting."""
    return len(spec.patch_scales) * spec.steps * spec.batch_size * spec.eot_samples


def evaluate_patch_spec(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: PatchParams,
    *,
    index: int,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
) -> PatchOutcome:
    """Train and evaluate the patch of one spec entry, reporting into the evaluation's progress."""
    units = patch_units(spec)
    reported = [0.0]

    def forward_progress(fraction: float, stage: str) -> None:
        progress.advance((fraction - reported[0]) * units, f"patch: {stage}")
        reported[0] = fraction

    run_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    outcome = run_patch_attack(
        model,
        x,
        y,
        spec,
        input_range=input_range,
        seed=run_seed,
        device=device,
        progress=forward_progress,
    )
    forward_progress(1.0, "done")
    return outcome


PhysicalEvaluation = Callable[..., PatchOutcome]
# Physical-world attacks by spec type: they train and evaluate themselves instead of running per eps.
PHYSICAL_ATTACKS: dict[type[EvasionAttackSpec], PhysicalEvaluation] = {PatchParams: evaluate_patch_spec}


def physical_evaluation(spec: EvasionAttackSpec) -> PhysicalEvaluation | None:
    """How a physical-world attack's spec is evaluated; None for an eps-bounded attack."""
    return PHYSICAL_ATTACKS.get(type(spec))


def physical_units(specs: Sequence[EvasionAttackSpec]) -> int:
    """Work units of the physical-world attacks of a spec list, for progress weighting."""
    return sum(patch_units(spec) for spec in specs if isinstance(spec, PatchParams))
