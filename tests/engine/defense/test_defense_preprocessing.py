"""Preprocessing defenses: real transforms forward, BPDA and EOT backward, adaptive attacks break them."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional

from app.schemas.defense_transforms import transform_specs
from tests.engine.defense_helpers import check, digits_split, pgd, run, worst
from worker.engine.defense.preprocessing import build_transforms, defended_classifier, defended_module
from worker.engine.defense.preprocessing.pipeline import DefendedPipeline
from worker.engine.models.intake import OnnxRuntimeClassifier

JPEG = [{"name": "jpeg", "quality": 75}]
RANDOM = [{"name": "random_resize_pad", "min_scale": 0.6}]


def built(records, shape=None, input_range=(0.0, 1.0)):
    """The engine transforms of spec entries (validated into their typed specs first)."""
    return build_transforms(transform_specs(records), shape, input_range)


def _images(n: int = 6) -> torch.Tensor:
    return torch.as_tensor(digits_split()[1][0][:n])


def test_jpeg_is_a_real_codec():
    x = _images()
    (jpeg,) = built(JPEG, (1, 8, 8))
    out = jpeg.apply(x, (0.0, 1.0), None)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)  # decoded 8-bit pixels
    assert float((out - x).abs().mean()) > 0.005
    (best,), (worst_q,) = (
        built([{"name": "jpeg", "quality": 95}]),
        built([{"name": "jpeg", "quality": 5}]),
    )
    assert (best.apply(x, (0, 1), None) - x).abs().mean() < (worst_q.apply(x, (0, 1), None) - x).abs().mean()


def test_forward_runs_the_real_transforms_and_backward_uses_bpda_or_the_naive_gradient(small_cnn):
    x = _images()
    transforms = built([*JPEG, {"name": "bit_depth", "bits": 3}], (1, 8, 8))
    real = x
    for transform in transforms:
        real = transform.apply(real, (0.0, 1.0), None)
    bpda = DefendedPipeline(small_cnn, transforms, gradient="bpda")
    naive = DefendedPipeline(small_cnn, transforms, gradient="naive")
    with torch.no_grad():
        assert torch.allclose(bpda(x), small_cnn(real)) and torch.allclose(naive(x), small_cnn(real))
    y = small_cnn(x).argmax(1)

    def grad(model: nn.Module, at: torch.Tensor) -> torch.Tensor:
        at = at.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(functional.cross_entropy(model(at), y), at)
        return g

    # BPDA with the identity: the base model's gradient at the transformed input.
    assert torch.allclose(grad(bpda, x), grad(small_cnn, real), atol=1e-6)
    assert float(grad(naive, x).abs().max()) == 0.0
    assert float(grad(bpda, x).abs().max()) > 0.0


def test_eot_averages_the_logits_of_independent_draws_only_when_a_gradient_is_taken():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = _images(4).requires_grad_(True)
    noise = built([{"name": "gaussian_noise", "sigma": 0.5}])
    single = DefendedPipeline(linear, noise, eot_draws=1, seed=3)
    eot = DefendedPipeline(linear, noise, eot_draws=50, seed=3)
    clean = linear(x).detach()
    spread_single = torch.stack([single(x).detach() - clean for _ in range(20)]).std()
    spread_eot = torch.stack([eot(x).detach() - clean for _ in range(20)]).std()
    assert spread_eot < spread_single / 4  # 50 draws: about 1/7 of the spread
    with torch.no_grad():  # predictions: one draw, as deployed
        assert torch.stack([eot(x) - clean for _ in range(20)]).std() > spread_single / 2


def test_black_box_form_matches_the_white_box_module(small_cnn, cnn_onnx):
    x = digits_split()[1][0][:40]
    spec = transform_specs([*JPEG, {"name": "median", "size": 3}, {"name": "gaussian", "sigma": 0.8}])
    module = defended_module(small_cnn, spec)
    classify = defended_classifier(OnnxRuntimeClassifier(cnn_onnx), spec)
    with torch.no_grad():
        expected = module(torch.as_tensor(x)).numpy()
    assert np.abs(classify(x) - expected).max() < 1e-4
    noisy = transform_specs([{"name": "gaussian_noise"}])
    assert module.eot_draws == 1 and defended_module(small_cnn, noisy).eot_draws == 10


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (JPEG, (64,), "needs image inputs"),
        (JPEG, (2, 8, 8), "needs 1 or 3 channels"),
        ([{"name": "median", "size": 7}], (1, 3, 3), "does not fit"),
        ([{"name": "gaussian_noise", "sigma": 2.0}], (1, 8, 8), "exceeds the input range"),
        ([], (1, 8, 8), "at least one transform"),
    ],
)
def test_transforms_that_do_not_fit_the_input_are_refused(spec, shape, message):
    with pytest.raises(ValueError, match=message):
        built(spec, shape)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([{"name": "sharpen"}], "does not match any of the expected tags"),
        ([{"name": "jpeg", "quality": 75, "subsampling": 2}], "subsampling"),
        ([{"name": "jpeg", "quality": 0}], "quality"),
        ([{"name": "median", "size": 4}], "size"),
    ],
)
def test_malformed_transforms_are_refused_by_their_typed_spec(spec, message):
    with pytest.raises(ValidationError, match=message):
        transform_specs(spec)


def test_bpda_breaks_jpeg_where_the_naive_attack_does_not(small_cnn):
    outcome = run({"name": "preprocessing", "transforms": JPEG}, pgd([0.1]), small_cnn)
    report = outcome.report
    undefended = report["headline"]["undefended_robust_accuracy"]
    assert worst(report, "naive", 0.1) >= undefended + 0.25
    assert worst(report, "adaptive", 0.1) <= undefended + 0.1
    assert report["headline"]["robust_accuracy"] <= worst(report, "adaptive", 0.1)
    assert not check(report, "naive_matches_adaptive")["passed"]
    assert outcome.model.onnx is None and outcome.model.preprocessing == [{"name": "jpeg", "quality": 75}]
    assert report["evaluation"]["defended"]["clean_accuracy"] >= 0.85


def test_bpda_and_eot_break_a_random_pipeline_where_the_naive_attack_does_not(small_cnn):
    transforms = [{"name": "bit_depth", "bits": 4}, {"name": "gaussian_noise", "sigma": 0.1}]
    report = run(
        {"name": "preprocessing", "transforms": transforms, "eot_draws": 10}, pgd([0.1]), small_cnn
    ).report
    undefended = report["headline"]["undefended_robust_accuracy"]
    naive, adaptive = worst(report, "naive", 0.1), worst(report, "adaptive", 0.1)
    assert naive >= undefended + 0.2 and naive >= adaptive + 0.25
    assert adaptive <= undefended + 0.1
    runs = report["evaluation"]["defended"]["runs"]
    assert [r["role"] for r in runs] == ["naive", "adaptive"]
    assert "fixed random draw" in runs[0]["view"] and "EOT over 10 draws" in runs[1]["view"]
    assert not check(report, "naive_matches_adaptive")["passed"]


def test_random_resize_pad_places_a_bilinear_resize_of_each_sample_on_the_canvas():
    x = torch.rand(50, 1, 8, 8) + 0.01  # no zero pixels, so the placed image is the non-zero box
    (transform,) = built(RANDOM, (1, 8, 8))
    out = transform.apply(x, (0.0, 1.0), torch.Generator().manual_seed(0))
    sizes = set()
    for sample, placed in zip(x, out, strict=True):
        box = (placed[0] != 0).nonzero()
        (top, left), (bottom, right) = box.min(0).values.tolist(), box.max(0).values.tolist()
        size = (bottom - top + 1, right - left + 1)
        assert min(size) >= 5 and max(size) <= 8 and int((placed[0] != 0).sum()) == size[0] * size[1]
        expected = functional.interpolate(sample[None], size=size, mode="bilinear", align_corners=False)[0]
        assert torch.allclose(placed[:, top : bottom + 1, left : right + 1], expected, atol=1e-5)
        sizes.add(size)
    assert len(sizes) > 5  # the draws differ
