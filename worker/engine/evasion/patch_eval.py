"""The physical-world patch inside an evasion evaluation: config from a spec, progress and seeding."""

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.evasion.patch import PatchConfig, PatchOutcome, run_patch_attack
from worker.engine.progress import ProgressTracker


def patch_config(spec: Mapping[str, Any]) -> PatchConfig:
    """A PatchConfig from a validated spec entry; missing or None keys keep their defaults."""
    names = {field.name for field in fields(PatchConfig)}
    options = {key: value for key, value in spec.items() if key in names and value is not None}
    if "scale_range" in options:
        options["scale_range"] = tuple(options["scale_range"])
    return PatchConfig(**options)


def patch_units(spec: Mapping[str, Any]) -> int:
    """Forward-and-backward passes of a patch run, for progress weighting."""
    config = patch_config(spec)
    return len(config.patch_scales) * config.steps * config.batch_size * config.eot_samples


def evaluate_patch_spec(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: Mapping[str, Any],
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
        patch_config(spec),
        input_range=input_range,
        seed=run_seed,
        device=device,
        progress=forward_progress,
    )
    forward_progress(1.0, "done")
    return outcome


# Physical-world attacks by name: they train and evaluate themselves instead of running per eps.
PHYSICAL_ATTACKS = {"patch": evaluate_patch_spec}
