"""Universal adversarial patch: transformations, held-out strength, ART parity, determinism, progress."""

import math
import random
import struct
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import PatchParams
from worker.engine.evasion.patch import (
    PatchTransforms,
    TransformDistribution,
    apply_patch,
    evaluate_patch,
    patch_distribution,
    run_patch_attack,
)
from worker.engine.evasion.patch import attack as patch_attack
from worker.engine.evasion.patch.evaluate import split_indices
from worker.engine.reports.png import to_uint8

SAMPLES = 200
TARGET = 9
# Placement inside the image (no overshoot past the border) keeps the tiny 8x8 runs informative.
FAST = {"steps": 80, "max_translation": 0.0, "eval_transforms": 8}
CPU = torch.device("cpu")


def _data(held_out) -> tuple[np.ndarray, np.ndarray]:
    return held_out[0][:SAMPLES], held_out[1][:SAMPLES]


class _FromSymmetric(nn.Module):
    """The digits model fed with inputs in (-1, 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x + 1.0) / 2.0)


def _spec(**fields: Any) -> PatchParams:
    """The patch attack's typed spec (defaults and limits live there) with the given fields."""
    return PatchParams(name="patch", **fields)


def _noise_baseline(model, x, y, config: PatchParams, side: int, target: int | None) -> float:
    """Mean success of uniform-noise patches of the same size under the same evaluation."""
    _, eval_index = split_indices(len(x), config.holdout_fraction, 0)
    rates = []
    for seed in range(4):
        generator = torch.Generator().manual_seed(100 + seed)
        noise = torch.rand((1, side, side), generator=generator)
        result = evaluate_patch(
            model,
            torch.as_tensor(x[eval_index]),
            torch.as_tensor(y[eval_index]),
            noise,
            distribution=patch_distribution(config),
            input_range=(0.0, 1.0),
            draws=config.eval_transforms,
            generator=generator,
            target_class=target,
        )
        rates.append(result.success_rate)
    return float(np.mean(rates))


def test_transforms_paste_rotate_and_keep_shapes():
    x = torch.zeros(2, 1, 8, 8)
    patch = torch.arange(16.0).view(1, 4, 4) / 16.0
    placed = PatchTransforms(
        angle=torch.tensor([0.0, math.pi / 2]),
        scale=torch.ones(2),
        center=torch.tensor([[3.0, 5.0], [4.0, 4.0]]),
        brightness=torch.zeros(2),
    )
    out = apply_patch(x, patch, placed, (0.0, 1.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out[0, 0, 3:7, 1:5], patch[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, 0, 2:6, 2:6], torch.rot90(patch[0], k=-1), atol=1e-5, rtol=0)
    assert out[0].abs().sum() == pytest.approx(patch.sum().item(), abs=1e-4)  # nothing outside


@pytest.mark.parametrize("input_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_transforms_are_seeded_bounded_and_differentiable(input_range):
    low, high = input_range
    distribution = TransformDistribution(
        rotation_deg=30.0, scale_range=(0.8, 1.2), max_translation=0.2, brightness=0.2
    )
    x = low + (high - low) * torch.rand(64, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    patch = torch.full((3, 5, 5), high, requires_grad=True)

    def draw(seed: int) -> PatchTransforms:
        generator = torch.Generator().manual_seed(seed)
        return distribution.sample(64, patch_side=5, image_hw=(12, 10), generator=generator, device=CPU)

    first, again, other = draw(1), draw(1), draw(2)
    for name in ("angle", "scale", "center", "brightness"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))
    assert first.angle.abs().max() <= math.radians(30.0) and first.brightness.abs().max() <= 0.2
    assert first.scale.min() >= 0.8 and first.scale.max() <= 1.2
    # max_translation 0.2: the centre stays within the free room plus 0.2 of the side past each border.
    reach_x = (10 - 5 * first.scale).clamp_min(0) / 2 + 0.2 * 10
    assert ((first.center[:, 0] - 5.0).abs() <= reach_x + 1e-5).all()
    out = apply_patch(x, patch, first, input_range)
    assert torch.equal(out, apply_patch(x, patch, again, input_range))
    assert out.shape == x.shape and out.min() >= low and out.max() <= high
    (grad,) = torch.autograd.grad(out.sum(), patch)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_untargeted_patch_beats_a_random_noise_patch(small_cnn, held_out):
    x, y = _data(held_out)
    config = _spec(patch_scales=[0.5], **FAST)
    outcome = run_patch_attack(small_cnn, x, y, config, seed=0, device=CPU)
    row = outcome.entry["results"][0]
    baseline = _noise_baseline(small_cnn, x, y, config, side=4, target=None)
    assert row["patch_side"] == 4 and row["n_train"] + row["n_eval"] == SAMPLES
    assert row["success_rate"] >= baseline + 0.15, (row, baseline)
    assert row["robust_accuracy"] <= row["clean_accuracy"] - 0.15
    assert row["clean_accuracy"] > 0.85


def test_targeted_patch_sends_images_to_the_target(small_cnn, held_out):
    x, y = _data(held_out)
    config = _spec(patch_scales=[0.5], targeted=True, target_class=TARGET, **FAST)
    outcome = run_patch_attack(small_cnn, x, y, config, seed=0, device=CPU)
    row = outcome.entry["results"][0]
    baseline = _noise_baseline(small_cnn, x, y, config, side=4, target=TARGET)
    assert row["success_rate"] >= max(0.2, 3 * baseline), (row, baseline)
    _, eval_index = split_indices(SAMPLES, 0.5, 0)
    assert row["n_attacked"] <= (y[eval_index] != TARGET).sum()
    assert outcome.entry["target_mode"] == "fixed" and outcome.entry["threat_model"] == "physical"


def test_targeted_strength_parity_with_art(small_cnn, held_out):
    """At least as strong as ART's AdversarialPatchNumpy with the same samples, scale and gradient budget."""
    pytest.importorskip("art")
    from art.attacks.evasion import AdversarialPatchNumpy
    from art.estimators.classification import PyTorchClassifier

    class ArtPatch(AdversarialPatchNumpy):
        """ART 1.20.1 fails to start when its clip values are float32 (np.float32 is not a float)."""

        def reset_patch(self, initial_patch_value):  # noqa: ANN001, ANN202
            if isinstance(initial_patch_value, np.floating):
                initial_patch_value = float(initial_patch_value)
            super().reset_patch(initial_patch_value)

    x, y = _data(held_out)
    scale, iterations = 0.75, 150
    train_index, eval_index = split_indices(SAMPLES, 0.5, 0)
    # Same number of patched-image gradients: ART takes one step per pass over the training images.
    steps = round(iterations * len(train_index) / (64 * 8))
    config = _spec(
        patch_scales=[scale], targeted=True, target_class=TARGET, steps=steps, scale_range=(1.0, 1.0),
        max_translation=0.0, brightness=0.0, eval_transforms=8,
    )  # fmt: skip
    ours = run_patch_attack(small_cnn, x, y, config, seed=0, device=CPU).entry["results"][0]
    random.seed(0)
    np.random.seed(0)  # ART draws its transformations from the global generators
    classifier = PyTorchClassifier(
        model=small_cnn,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    reference = ArtPatch(
        classifier, target=TARGET, rotation_max=22.5, scale_min=scale, scale_max=scale, max_iter=iterations,
        verbose=False,
    )  # fmt: skip
    reference.generate(x[train_index], np.eye(10)[np.full(len(train_index), TARGET)])
    x_eval, y_eval = x[eval_index], y[eval_index]
    clean = classifier.predict(x_eval).argmax(1) == y_eval
    robust = [
        (clean & (classifier.predict(reference.apply_patch(x_eval, scale=scale)).argmax(1) == y_eval)).mean()
        for _ in range(8)
    ]
    assert ours["clean_accuracy"] == pytest.approx(clean.mean())
    assert ours["robust_accuracy"] <= float(np.mean(robust)) + 0.01, (ours, np.mean(robust))


def test_patches_stay_in_range_and_images_match(small_cnn, held_out):
    x, y = _data(held_out)
    symmetric = _FromSymmetric(small_cnn)
    config = _spec(patch_scales=[0.375, 0.5], optimizer="sgd", steps=15, eval_transforms=2)
    outcome = run_patch_attack(
        symmetric, 2.0 * x - 1.0, y, config, input_range=(-1.0, 1.0), seed=3, device=CPU
    )
    assert [row["patch_scale"] for row in outcome.entry["results"]] == [0.375, 0.5]
    for index, (scale, side) in enumerate([(0.375, 3), (0.5, 4)]):
        patch = outcome.arrays[f"patch_{index}"]
        assert patch.shape == (1, side, side) and patch.dtype == np.float32
        assert patch.min() >= -1.0 and patch.max() <= 1.0
        png = outcome.images[f"patch_scale_{scale:g}.png"]
        raw = zlib.decompress(png[8 + 25 + 8 : 8 + 25 + 8 + struct.unpack(">I", png[33:37])[0]])
        pixels = np.frombuffer(raw, np.uint8).reshape(side, side + 1)[:, 1:]
        assert np.array_equal(pixels, to_uint8(patch[0], (-1.0, 1.0)))
    last = outcome.entry["results"][-1]
    assert last["robust_accuracy"] <= last["clean_accuracy"] - 0.2  # the authors' update works in (-1, 1)
    params = outcome.entry["params"]
    assert params["optimizer"] == "sgd" and params["learning_rate"] == 5.0
    assert params["input_range"] == [-1.0, 1.0]


def test_held_out_samples_are_never_used_in_training(small_cnn, held_out, monkeypatch):
    x, y = _data(held_out)
    seen: list[torch.Tensor] = []
    original = patch_attack.train_patch

    def spy(model, x_train, labels, **kwargs):
        seen.append(x_train.clone())
        return original(model, x_train, labels, **kwargs)

    monkeypatch.setattr(patch_attack, "train_patch", spy)
    outcome = run_patch_attack(small_cnn, x, y, _spec(patch_scales=[0.5], steps=2, eval_transforms=1))
    train_index, eval_index = outcome.arrays["train_indices"], outcome.arrays["eval_indices"]
    assert not set(train_index) & set(eval_index)
    assert sorted({*train_index, *eval_index}) == list(range(SAMPLES)) and len(eval_index) == SAMPLES // 2
    assert len(seen) == 1 and torch.equal(seen[0], torch.as_tensor(x[train_index]))


def test_same_seed_same_patch(small_cnn, held_out):
    x, y = _data(held_out)
    config = _spec(patch_scales=[0.5], steps=10, eval_transforms=2)
    runs = [run_patch_attack(small_cnn, x, y, config, seed=seed, device=CPU) for seed in (5, 5, 6)]
    assert np.array_equal(runs[0].arrays["patch_0"], runs[1].arrays["patch_0"])
    assert runs[0].images == runs[1].images
    strip = [{k: v for k, v in run.entry["results"][0].items() if k != "seconds"} for run in runs]
    assert strip[0] == strip[1]
    assert not np.array_equal(runs[0].arrays["patch_0"], runs[2].arrays["patch_0"])


def test_progress_is_monotone_and_cancellation_propagates(small_cnn, held_out):
    x, y = _data(held_out)
    config = _spec(patch_scales=[0.25, 0.5], steps=6, eval_transforms=1)
    fractions: list[float] = []
    run_patch_attack(small_cnn, x, y, config, progress=lambda fraction, stage: fractions.append(fraction))
    assert len(fractions) >= 2 * config.steps
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)

    class Cancelled(Exception):
        pass

    def cancel(fraction: float, stage: str) -> None:
        if fraction > 0.2:
            raise Cancelled(stage)

    small_cnn.train()
    try:
        with pytest.raises(Cancelled):
            run_patch_attack(small_cnn, x, y, config, progress=cancel)
        assert small_cnn.training  # the caller's mode is restored
    finally:
        small_cnn.eval()


def test_bad_inputs_are_refused(small_cnn, held_out):
    x, y = _data(held_out)
    config = _spec(patch_scales=[0.5], steps=1)
    with pytest.raises(ValueError, match="images"):
        run_patch_attack(small_cnn, x.reshape(SAMPLES, -1), y, config)
    with pytest.raises(ValueError, match="input range"):
        run_patch_attack(small_cnn, x + 2.0, y, config)
    with pytest.raises(ValueError, match="target_class"):
        run_patch_attack(small_cnn, x, y, _spec(patch_scales=[0.5], targeted=True, target_class=10))
    for bad in (
        {"patch_scales": []},
        {"patch_scales": [0.0]},
        {"patch_scales": [1.5]},
        {"patch_scales": [0.5, 0.5]},
        {"patch_scales": [0.5], "targeted": True},
        {"patch_scales": [0.5], "holdout_fraction": 1.0},
        {"patch_scales": [0.5], "steps": 0},
        {"patch_scales": [0.5], "rotation_deg": 200.0},
        {"patch_scales": [0.5], "scale_range": (1.2, 1.1)},
        {"patch_scales": [0.5], "optimizer": "rmsprop"},
    ):
        with pytest.raises(ValidationError):  # the limits live in the spec
            _spec(**bad)
