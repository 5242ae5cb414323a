"""HopSkipJump: minimum-norm threat model, query budget and counting, onnxruntime, ART parity."""

import math
import warnings

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import HopSkipJumpParams
from tests.engine.attack_helpers import (
    clean_correct,
    onnx_black_box,
    predict,
    query_only_without_gradients,
    seeded,
)
from worker.engine.evasion.attacks.base import restrict_to_budget
from worker.engine.evasion.attacks.hop_skip_jump import HopSkipJump
from worker.engine.evasion.attacks.norms import perturbation_norm

INF = math.inf


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 60 held-out digits the CNN classifies correctly (what the runner attacks)."""
    return clean_correct(small_cnn, held_out, 64)


def _robust_at(sizes: torch.Tensor, success: torch.Tensor, eps: float) -> float:
    """Robust accuracy at eps of a minimum-norm outcome on clean-correct samples."""
    return 1.0 - (success & (sizes <= eps)).float().mean().item()


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("targeted", [False, True])
def test_black_box_minimum_norm_run(small_cnn, samples, cnn_onnx, norm, targeted):
    x, y = samples
    black_box, classifier = onnx_black_box(cnn_onnx)
    targets = (y + 3) % 10 if targeted else None
    budget = 1200
    attack = HopSkipJump.configured(norm=norm, targeted=targeted, iterations=4, max_queries=budget)
    result = attack.run(black_box, x, y, eps=INF, targets=targets, generator=seeded())
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert torch.equal(result.predictions, predict(small_cnn, result.x_adv))
    expected = result.predictions == targets if targeted else result.predictions != y
    assert torch.equal(result.success, expected)
    assert result.success.float().mean() >= 0.9
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    queries = result.queries
    assert queries is not None and queries.min() >= 1 and queries.max() <= budget
    assert int(queries.sum()) + len(x) == classifier.queries  # the search's queries, then the judge's pass
    sizes = perturbation_norm(result.x_adv - x, norm)[result.success]
    assert sizes.median() < (1.5 if norm == "l2" else 0.35)


@pytest.mark.parametrize("budget", [1, 25, 300])
def test_query_budget_holds_per_sample(samples, cnn_onnx, budget):
    x, y = samples
    black_box, classifier = onnx_black_box(cnn_onnx)
    result = HopSkipJump.configured(norm="linf", max_queries=budget).run(
        black_box, x, y, eps=INF, generator=seeded()
    )
    assert result.queries.max() <= budget and int(result.queries.sum()) + len(x) == classifier.queries
    assert result.success.all()  # with no query to spare, the nearest differently classified batch sample


def test_no_gradient_path_is_needed_or_used(samples, cnn_onnx):
    x, y = samples
    no_graph = query_only_without_gradients(cnn_onnx, x[:4])
    result = HopSkipJump.configured(iterations=3, max_queries=800).run(
        no_graph, x, y, eps=INF, generator=seeded()
    )
    at_eps = restrict_to_budget(result, x, y, 1.5, "l2")
    assert (at_eps.predictions == y).float().mean() < 0.5  # clean accuracy on these samples is 1.0


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_onnxruntime_and_torch_module_agree_for_a_seed(small_cnn, samples, cnn_onnx, norm):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    attack = HopSkipJump.configured(norm=norm, iterations=4, max_queries=1500)
    on_onnx = attack.run(black_box, x, y, eps=INF, generator=seeded(2))
    on_torch = attack.run(small_cnn, x, y, eps=INF, generator=seeded(2))
    sizes_onnx = perturbation_norm(on_onnx.x_adv - x, norm)
    sizes_torch = perturbation_norm(on_torch.x_adv - x, norm)
    assert torch.equal(on_onnx.success, on_torch.success)
    assert ((sizes_onnx - sizes_torch).abs() <= 0.05 * sizes_torch).float().mean() >= 0.9
    assert abs(sizes_onnx.median() - sizes_torch.median()) <= 0.02 * sizes_torch.median()


def test_deterministic_and_more_iterations_help(samples, cnn_onnx):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    runs = [
        HopSkipJump.configured(iterations=2).run(black_box, x, y, eps=INF, generator=seeded(4))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].queries, runs[1].queries)
    other = HopSkipJump.configured(iterations=2).run(black_box, x, y, eps=INF, generator=seeded(5))
    assert not torch.equal(runs[0].x_adv, other.x_adv)
    longer = HopSkipJump.configured(iterations=6).run(black_box, x, y, eps=INF, generator=seeded(4))
    short_sizes = perturbation_norm(runs[0].x_adv - x, "l2")
    long_sizes = perturbation_norm(longer.x_adv - x, "l2")
    assert long_sizes.median() < 0.9 * short_sizes.median()
    assert (long_sizes <= short_sizes + 1e-6).float().mean() >= 0.8


def test_finite_eps_keeps_only_perturbations_within_it(samples, cnn_onnx):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    attack = HopSkipJump.configured(iterations=3, max_queries=800)
    unbounded = attack.run(black_box, x, y, eps=INF, generator=seeded(1))
    bounded = attack.run(black_box, x, y, eps=1.0, generator=seeded(1))
    assert perturbation_norm(bounded.x_adv - x, "l2").max() <= 1.0 + 1e-5
    expected = restrict_to_budget(unbounded, x, y, 1.0, "l2")
    # the bounded run's output is projected onto the ball once more by run's verification (ulps apart)
    assert torch.equal(bounded.success, expected.success)
    assert torch.allclose(bounded.x_adv, expected.x_adv, atol=1e-6)
    assert 0 < bounded.success.sum() < unbounded.success.sum()


def test_targeted_starts_from_a_batch_sample_of_the_target_class(small_cnn, samples, cnn_onnx):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    targets = torch.roll(y, 1)
    wanted = targets != y
    result = HopSkipJump.configured(targeted=True, max_queries=1).run(
        black_box, x[wanted], y[wanted], eps=INF, targets=targets[wanted], generator=seeded()
    )
    assert result.success.all()  # every target class is predicted for some other sample of the batch
    assert torch.equal(predict(small_cnn, result.x_adv), targets[wanted])


def test_custom_input_range_is_respected(small_cnn, samples):
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: small_cnn((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = samples
    x = x * 2.0 - 1.0
    for norm in ("l2", "linf"):
        result = HopSkipJump.configured(
            norm=norm, iterations=3, max_queries=800, input_range=(-1.0, 1.0)
        ).run(wrapped, x, y, eps=INF, generator=seeded())
        assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
        assert result.success.float().mean() >= 0.9
        assert torch.equal(result.predictions, predict(wrapped, result.x_adv))


def test_flat_inputs_work(small_cnn, samples):
    x, y = samples
    flat_model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), small_cnn)
    result = HopSkipJump.configured(iterations=2, max_queries=600).run(flat_model, x.flatten(1), y, eps=INF)
    assert result.x_adv.shape == x.flatten(1).shape and result.success.float().mean() >= 0.9
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0


def test_parameters_and_spec():
    attack = HopSkipJump.configured(norm="linf", eps=[0.1], max_queries=900, iterations=7, gamma=2.0)
    with pytest.raises(ValidationError, match="steps\n  Extra inputs are not permitted"):
        HopSkipJump.configured(norm="linf", eps=[0.1], steps=3)
    assert (attack.norm, attack.max_queries, attack.iterations, attack.gamma) == ("linf", 900, 7, 2.0)
    spec = HopSkipJumpParams(name="hopskipjump", norm="linf", eps=[0.1], max_queries=900)
    assert spec.passes_per_sample() == 900 and attack.minimum_norm and not attack.requires_gradients
    default = HopSkipJump.configured()
    assert (default.norm, default.max_queries, default.iterations, default.init_evals, default.max_evals) == (
        "l2",
        20000,
        40,
        100,
        10000,
    )
    for bad in ({"max_queries": 0}, {"iterations": 0}, {"gamma": 0.0}, {"init_evals": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            HopSkipJump.configured(**bad)
    with pytest.raises(
        ValueError, match="max_evals must be at least init_evals"
    ):  # across fields: the engine
        HopSkipJump.configured(max_evals=50)


@pytest.mark.parametrize(("norm", "eps_values"), [("l2", (0.5, 1.0)), ("linf", (0.1, 0.2))])
def test_strength_parity_with_art(small_cnn, samples, norm, eps_values):
    """Same model, samples and schedule (8 iterations, 100 initial evaluations): about 1.9k queries."""
    from art.attacks.evasion import HopSkipJump as ArtHopSkipJump
    from art.estimators.classification import PyTorchClassifier

    x, y = samples
    iterations = 8
    ours = HopSkipJump.configured(norm=norm, iterations=iterations).run(
        small_cnn, x, y, eps=INF, generator=seeded()
    )
    counted = _Counting(small_cnn)
    classifier = PyTorchClassifier(
        counted, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0)
    )
    reference = ArtHopSkipJump(
        classifier,
        norm=2 if norm == "l2" else np.inf,
        max_iter=iterations,
        max_eval=10000,
        init_eval=100,
        verbose=False,
    )
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_art = torch.as_tensor(reference.generate(x.numpy())).float()
    art_success = predict(small_cnn, x_art) != y
    ours_sizes = perturbation_norm(ours.x_adv - x, norm)
    art_sizes = perturbation_norm(x_art - x, norm)
    assert ours.success.all() and art_success.all()
    assert ours_sizes[ours.success].median() <= 1.1 * art_sizes[art_success].median()
    for eps in eps_values:
        assert _robust_at(ours_sizes, ours.success, eps) <= _robust_at(art_sizes, art_success, eps) + 0.02
    assert ours.queries.float().mean() <= 1.05 * counted.queries / len(x)  # no more queries than ART


class _Counting(nn.Module):
    """Counts the samples ART sends through the model (ART's interpolations come in as float64)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.queries = model, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.queries += len(z)
        return self.model(z.float())
