"""Targets of the targeted clean-label attacks: held-out samples the clean baseline gets right."""

import numpy as np
import torch
from torch import nn

from worker.engine.poisoning.attacks.base import TargetedPoisoning
from worker.engine.poisoning.data import TargetSample
from worker.engine.poisoning.victim import Exported


@torch.no_grad()
def _runner_up(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> np.ndarray:
    """The surrogate's most likely class other than the true one, per sample."""
    logits = model(torch.as_tensor(x, device=device)).float()
    logits[torch.arange(len(y)), torch.as_tensor(y, device=logits.device)] = -torch.inf
    return logits.argmax(1).cpu().numpy().astype(np.int64)


def select_targets(
    attack: TargetedPoisoning,
    baseline: Exported,
    surrogate: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    device: torch.device,
) -> list[TargetSample]:
    """`attack.targets` held-out samples the clean baseline classifies correctly, with intended classes.

    The evaluator draws the targets (a success only counts on a sample the clean model gets right); the
    intended class is the attack's `intended_class`, or the clean surrogate's runner-up class (the
    attacker's choice, made without the victim). ValueError when no held-out sample qualifies.
    """
    pool = baseline.predict(x) == y
    if attack.spec.intended_class is not None:
        pool &= y != attack.spec.intended_class
    candidates = np.flatnonzero(pool)
    if len(candidates) == 0:
        raise ValueError(f"{attack.name}: no held-out sample the clean baseline classifies correctly")
    picks = np.sort(
        rng.choice(candidates, size=min(int(attack.spec.targets), len(candidates)), replace=False)
    )
    if attack.spec.intended_class is not None:
        intended = np.full(len(picks), int(attack.spec.intended_class), dtype=np.int64)
    else:
        intended = _runner_up(surrogate, x[picks], y[picks], device)
    return [
        TargetSample(index=int(i), x=x[i].copy(), label=int(y[i]), intended=int(c))
        for i, c in zip(picks, intended, strict=True)
    ]
