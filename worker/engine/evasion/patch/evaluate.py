"""Evaluate a trained patch on held-out images under fresh random transformations."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from worker.engine.evasion.patch.transforms import TransformDistribution, apply_patch

# Seed-sequence key of the train/held-out split.
SPLIT_KEY = 1 << 22


@dataclass(frozen=True)
class PatchEvaluation:
    """How a patch fared on the evaluated images, averaged over the transformation draws.

    success_rate: among the attacked images (clean-correct, and for a targeted patch not already of
        the target class), the share of (image, draw) pairs that the patch flips (untargeted) or
        sends to the target (targeted); None when no image could be attacked.
    robust_accuracy: among all evaluated images, the share of (image, draw) pairs classified
        correctly both clean and with the patch.
    clean_accuracy: share of evaluated images classified correctly without the patch.
    """

    success_rate: float | None
    robust_accuracy: float
    clean_accuracy: float
    n_eval: int
    n_attacked: int


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; CPU for a stateless model."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_images(x: np.ndarray, y: np.ndarray, input_range: tuple[float, float]) -> None:
    """Reject inputs the attack cannot be honest about."""
    if x.ndim != 4:
        raise ValueError(f"the patch attack needs images x [N, C, H, W], got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or len(x) < 2:
        raise ValueError(f"need y [N] matching x with N >= 2, got {y.shape} for {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError("y must hold non-negative integer labels")
    low, high = input_range
    if not low < high:
        raise ValueError(f"input_range must satisfy low < high, got {input_range}")
    if not np.isfinite(x).all() or x.min() < low - 1e-6 or x.max() > high + 1e-6:
        raise ValueError(f"x must be finite and inside the input range [{low}, {high}]")


def split_indices(n: int, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, held-out) sample indices, a seeded random partition of range(n)."""
    order = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_KEY])).permutation(n)
    n_eval = min(n - 1, max(1, round(n * holdout_fraction)))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


@torch.no_grad()
def evaluate_patch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    patch: Tensor,
    *,
    distribution: TransformDistribution,
    input_range: tuple[float, float],
    draws: int,
    generator: torch.Generator,
    target_class: int | None = None,
    batch_size: int = 512,
) -> PatchEvaluation:
    """Apply the patch `draws` times per image under fresh transformations and measure the outcome.

    x [N, C, H, W] and y [N] may live on the CPU; they are moved to the generator's device in
    chunks of at most batch_size patched images per forward pass. target_class None means
    untargeted.
    """
    if draws < 1 or batch_size < 1:
        raise ValueError("draws and batch_size must be at least 1")
    device = generator.device
    side, image_hw = int(patch.shape[-1]), (int(x.shape[2]), int(x.shape[3]))
    patch = patch.to(device)
    chunk = max(1, batch_size // draws)
    clean_correct, hits, still_correct = [], [], []
    for start in range(0, len(x), chunk):
        images, labels = x[start : start + chunk].to(device), y[start : start + chunk].to(device)
        clean_correct.append(model(images).argmax(dim=1) == labels)
        tiled = images.repeat(draws, 1, 1, 1)
        transforms = distribution.sample(
            len(tiled), patch_side=side, image_hw=image_hw, generator=generator, device=device
        )
        predictions = model(apply_patch(tiled, patch, transforms, input_range)).argmax(dim=1)
        predictions = predictions.view(draws, len(images))
        correct = predictions == labels[None]
        hit = ~correct if target_class is None else predictions == target_class
        hits.append(hit.double().mean(dim=0))
        still_correct.append(correct.double().mean(dim=0))
    clean = torch.cat(clean_correct)
    hit_rate, correct_rate = torch.cat(hits), torch.cat(still_correct)
    attacked = clean if target_class is None else clean & (y.to(device) != target_class)
    n_attacked = int(attacked.sum())
    return PatchEvaluation(
        success_rate=float(hit_rate[attacked].mean()) if n_attacked else None,
        robust_accuracy=float((correct_rate * clean.double()).mean()),
        clean_accuracy=float(clean.double().mean()),
        n_eval=len(x),
        n_attacked=n_attacked,
    )
