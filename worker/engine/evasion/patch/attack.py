"""Universal adversarial patch (Brown et al. 2017) trained with expectation over transformation."""

import base64
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.evasion import PatchParams
from worker.engine.evasion.patch.evaluate import check_images, evaluate_patch, model_device, split_indices
from worker.engine.evasion.patch.transforms import TransformDistribution, apply_patch
from worker.engine.progress import ProgressTracker
from worker.engine.reports.png import chw_to_png
from worker.engine.seeding import seeded_generator

PatchOptimizer = Literal["adam", "sgd"]
# Default learning rate per optimizer, in the units documented on run_patch_attack.
DEFAULT_LEARNING_RATE: dict[str, float] = {"adam": 0.05, "sgd": 5.0}
# Seed-sequence keys of a patch scale's training and evaluation draws.
TRAIN_KEY, EVAL_KEY = 1 << 23, 1 << 24


def patch_distribution(spec: PatchParams) -> TransformDistribution:
    """The distribution of transformations the spec's patch is trained and evaluated under."""
    low, high = spec.scale_range
    return TransformDistribution(
        rotation_deg=spec.rotation_deg,
        scale_range=(low, high),
        max_translation=spec.max_translation,
        brightness=spec.brightness,
    )


def learning_rate(spec: PatchParams) -> float:
    """The learning rate in effect (the optimiser's default when the spec gives none)."""
    return float(spec.learning_rate or DEFAULT_LEARNING_RATE[spec.optimizer])


@dataclass
class PatchOutcome:
    """The report entry, the patches as arrays (patch_<i> [C, s, s] per scale, split indices) and PNGs."""

    entry: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)


def patch_side(scale: float, image_hw: tuple[int, int]) -> int:
    """Side in pixels of a patch at the given scale of the image's shorter side."""
    return max(1, round(scale * min(image_hw)))


def _batches(n: int, size: int, generator: torch.Generator) -> Callable[[], Tensor]:
    """Draw training batches without replacement, reshuffling at the end of every epoch."""
    state = {"order": torch.randperm(n, generator=generator, device=generator.device), "pos": 0}

    def next_batch() -> Tensor:
        """Indices of the next batch."""
        if state["pos"] + size > n:
            state["order"] = torch.randperm(n, generator=generator, device=generator.device)
            state["pos"] = 0
        start = state["pos"]
        state["pos"] = start + size
        return state["order"][start : start + size]

    return next_batch


def train_patch(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    *,
    side: int,
    spec: PatchParams,
    input_range: tuple[float, float],
    generator: torch.Generator,
    on_step: Callable[[int], None] | None = None,
) -> Tensor:
    """Optimise one patch [C, side, side] on (x, labels) under EOT; labels are targets if targeted.

    x and labels may live on the CPU; batches move to the generator's device. Only the gradient
    w.r.t. the patch is computed (torch.autograd.grad); model parameters get no gradients.
    """
    device, (low, high) = generator.device, input_range
    distribution, image_hw = patch_distribution(spec), (int(x.shape[2]), int(x.shape[3]))
    size = min(spec.batch_size, len(x))
    patch = torch.full((x.shape[1], side, side), (low + high) / 2.0, device=device, dtype=x.dtype)
    rate = learning_rate(spec)
    adam = None
    if spec.optimizer == "adam":
        patch.requires_grad_(True)
        adam = torch.optim.Adam([patch], lr=rate * (high - low), maximize=True)
    next_batch = _batches(len(x), size, generator)
    for step in range(spec.steps):
        index = next_batch()
        images = x[index.to(x.device)].to(device).repeat(spec.eot_samples, 1, 1, 1)
        wanted = labels[index.to(labels.device)].to(device).repeat(spec.eot_samples)
        transforms = distribution.sample(
            len(images), patch_side=side, image_hw=image_hw, generator=generator, device=device
        )
        leaf = patch.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = functional.cross_entropy(model(apply_patch(images, leaf, transforms, input_range)), wanted)
            objective = -loss if spec.targeted else loss
            (grad,) = torch.autograd.grad(objective, leaf)
        with torch.no_grad():
            if adam is not None:
                patch.grad = grad
                adam.step()
                patch.clamp_(low, high)
            else:
                patch = (patch + rate * ((high - low) / 2.0) ** 2 * grad).clamp(low, high)
        if on_step is not None:
            on_step(step)
    return patch.detach()


def run_patch_attack(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: PatchParams,
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    device: torch.device | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> PatchOutcome:
    """Train a patch per scale on a training portion and evaluate it on the held-out rest.

    A universal adversarial patch attack: one patch per scale, robust to physical transformations.

    Paper: Brown, Mané, Roy, Abadi and Gilmer, "Adversarial Patch", NIPS 2017 workshop
    (arXiv:1712.09665), trained with Expectation over Transformation (Athalye, Engstrom, Ilyas and
    Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018).

    Threat model: white-box (gradients w.r.t. the patch pixels), physical: one square patch, the same
    for every image, replaces the pixels it covers (any values in the input range, no norm bound);
    where and how it lands is random (rotation, scale, location, brightness), so the patch must work
    in expectation over those conditions and over images it never saw.

    Training maximises E_{x, t}[loss] over the training portion: untargeted ascends the cross-entropy
    to the true label; targeted descends the cross-entropy to target_class (the paper's
    log Pr(target)). Each step draws batch_size training images (reshuffled every epoch), pastes the
    patch into each eot_samples times under fresh transformations, and takes one optimiser step on
    the mean loss; the patch starts mid-range gray (as in the authors' code) and is clipped into
    the input range after every step. The last iterate is evaluated on the held-out portion.

    Optimiser: the paper names none. The authors' released notebook uses plain gradient descent
    (learning rate 5.0, images scaled to [-1, 1]); ART's PyTorch and TensorFlow ports use Adam. The
    default here is Adam, whose per-pixel step does not depend on the model's gradient scale, so one
    learning rate means the same on any uploaded model; "sgd" reproduces the authors' update.

    Parameters, from the spec (`PatchParams`, which holds their defaults and limits):
        patch_scales: patch side as a fraction of the image's shorter side; one patch is trained and
            reported per scale (side = max(1, round(scale * min(H, W)))).
        targeted, target_class (required when targeted): the class the patch should make the model
            predict ("fixed" target mode).
        steps: optimiser steps (the spec's default is ART's max_iter default).
        optimizer: "adam" or "sgd".
        learning_rate: None for the optimiser's default (DEFAULT_LEARNING_RATE). adam: step size as a
            fraction of the input range width (Adam's lr = learning_rate * (high - low)), default
            0.05. sgd: the authors' plain gradient descent rate in their [-1, 1] input units, default
            5.0 (their notebook's value), i.e. a step of learning_rate * ((high - low) / 2) ** 2
            times the gradient in input units.
        batch_size: training images per step; eot_samples: transformations per image per step (so
            batch_size * eot_samples forward+backward passes per step).
        rotation_deg (the paper's and ART's default), scale_range (jitter of the patch side),
            max_translation, brightness: see TransformDistribution.
        holdout_fraction: share of the samples held out for evaluation.
        eval_transforms: transformation draws per held-out image.

    The model is put in eval mode for the run (its mode is restored afterwards); with `device` given
    it is moved there. Exceptions from `progress` propagate (cancellation). Same seed, same inputs:
    same patches and numbers (except seconds). Each scale's draws depend on the seed and the scale
    value only, so a scale gives the same patch whatever else is in the list.
    """
    input_range = (float(input_range[0]), float(input_range[1]))
    check_images(x, y, input_range)
    if device is not None:
        model.to(device)
    device = device or model_device(model)
    x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.as_tensor(y, dtype=torch.long)
    train_index, eval_index = split_indices(len(x_all), spec.holdout_fraction, seed)
    x_train, x_eval = x_all[train_index], x_all[eval_index]
    y_train, y_eval = y_all[train_index], y_all[eval_index]
    image_hw = (int(x_all.shape[2]), int(x_all.shape[3]))
    per_step = min(spec.batch_size, len(x_train)) * spec.eot_samples
    eval_units = math.ceil(len(x_eval) * spec.eval_transforms / (3 * per_step))
    tracker = ProgressTracker(len(spec.patch_scales) * (spec.steps + eval_units), progress)
    arrays: dict[str, np.ndarray] = {
        "patch_scales": np.asarray(spec.patch_scales, dtype=np.float64),
        "train_indices": train_index.astype(np.int64),
        "eval_indices": eval_index.astype(np.int64),
    }
    images: dict[str, bytes] = {}
    results = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            num_classes = int(model(x_eval[:1].to(device)).shape[1])
        target = int(spec.target_class) if spec.targeted and spec.target_class is not None else None
        if int(y_all.max()) >= num_classes or (target is not None and not 0 <= target < num_classes):
            raise ValueError(f"labels and target_class must be below the model's {num_classes} outputs")
        train_labels = torch.full_like(y_train, target) if target is not None else y_train
        for number, scale in enumerate(spec.patch_scales):
            started = time.perf_counter()
            side = patch_side(scale, image_hw)
            scale_key = round(scale * 1_000_000)
            stage = f"patch scale {scale:g} ({number + 1}/{len(spec.patch_scales)}) step"
            patch = train_patch(
                model,
                x_train,
                train_labels,
                side=side,
                spec=spec,
                input_range=input_range,
                generator=seeded_generator(device, seed, scale_key, TRAIN_KEY),
                on_step=lambda step, stage=stage: tracker.advance(1, f"{stage} {step + 1}/{spec.steps}"),
            )
            evaluation = evaluate_patch(
                model,
                x_eval,
                y_eval,
                patch,
                distribution=patch_distribution(spec),
                input_range=input_range,
                draws=spec.eval_transforms,
                generator=seeded_generator(device, seed, scale_key, EVAL_KEY),
                target_class=target,
                batch_size=per_step,
            )
            tracker.advance(eval_units, f"patch scale {scale:g} evaluated")
            values = patch.cpu().numpy().astype(np.float32)
            arrays[f"patch_{number}"] = values
            row = {"patch_scale": scale, "patch_side": side, **asdict(evaluation), "n_train": len(x_train)}
            if values.shape[0] in (1, 3):
                png = chw_to_png(values, input_range)
                images[f"patch_scale_{scale:g}.png"] = png
                row["png_base64"] = base64.b64encode(png).decode("ascii")
            seconds = time.perf_counter() - started
            results.append({**row, "seconds": seconds})
    finally:
        model.train(was_training)
    params = spec.model_dump(exclude={"name", "patch_scales"})
    params.update(
        scale_range=list(spec.scale_range),
        learning_rate=learning_rate(spec),
        loss="cross_entropy",
        input_range=list(input_range),
        patch_init="mid-range gray",
    )
    entry = {
        "name": "patch",
        "norm": "patch",
        "targeted": spec.targeted,
        "target_mode": "fixed" if spec.targeted else None,
        "threat_model": "physical",
        "params": params,
        "results": results,
    }
    return PatchOutcome(entry=entry, arrays=arrays, images=images)
