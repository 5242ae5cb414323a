"""Target selection for targeted attacks.

Modes:
    least_likely: the class with the lowest clean logit, the true label excluded (the hardest
        target, Kurakin et al. 2017).
    random: uniform over the classes other than the true label, drawn from the seeded generator.
    fixed: one given target_class for every sample. A sample whose true label already is the
        target cannot be attacked meaningfully: it is left unchanged (x_adv = x, success False),
        excluded from the attack success rate and the perturbation statistics, and counted in
        robust accuracy by its clean prediction. `attackable` marks the samples that are attacked.
"""

from typing import Literal, get_args

import torch
from torch import Tensor

TargetMode = Literal["least_likely", "random", "fixed"]
TARGET_MODES: tuple[str, ...] = get_args(TargetMode)


def select_targets(
    mode: str,
    y: Tensor,
    *,
    num_classes: int,
    clean_logits: Tensor | None = None,
    target_class: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Target label per sample for the given mode (see the module docstring)."""
    if num_classes < 2:
        raise ValueError("targeted attacks need at least two classes")
    y = y.long()
    if mode == "least_likely":
        if clean_logits is None or clean_logits.shape != (len(y), num_classes):
            raise ValueError("least_likely targets need clean logits of shape [N, num_classes]")
        masked = clean_logits.detach().clone().float()
        masked[torch.arange(len(y), device=masked.device), y.to(masked.device)] = torch.inf
        return masked.argmin(dim=1).to(y.device)
    if mode == "random":
        draws = torch.randint(0, num_classes - 1, (len(y),), generator=generator, device=y.device)
        return draws + (draws >= y).long()
    if mode == "fixed":
        if target_class is None or not 0 <= int(target_class) < num_classes:
            raise ValueError(f"fixed targets need target_class in [0, {num_classes}), got {target_class}")
        return torch.full_like(y, int(target_class))
    raise ValueError(f"unknown target mode {mode!r}; available: {', '.join(TARGET_MODES)}")


def attackable(y: Tensor, targets: Tensor) -> Tensor:
    """Samples a targeted attack can be run on: those whose true label is not the target."""
    return targets != y
