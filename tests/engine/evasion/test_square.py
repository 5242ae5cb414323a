"""Square Attack: threat model, query budget and counting, onnxruntime without gradients, reference parity."""

import warnings

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import SquareParams
from tests.engine.attack_helpers import (
    clean_correct,
    onnx_black_box,
    predict,
    query_only_without_gradients,
    seeded,
)
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.attacks.square import SquareAttack, p_schedule
from worker.engine.evasion.attacks.square_l2 import l2_init, square_pattern

EPS = {"linf": 0.15, "l2": 1.5}
TOL = 1e-5


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 100 held-out digits the CNN classifies correctly (what the runner attacks)."""
    return clean_correct(small_cnn, held_out, 110)


def _robust(result, y: torch.Tensor) -> float:
    return (result.predictions == y).float().mean().item()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_black_box_run_respects_threat_model_and_budget(small_cnn, samples, cnn_onnx, norm, targeted):
    x, y = samples
    black_box, classifier = onnx_black_box(cnn_onnx)
    targets = (y + 1) % 10 if targeted else None
    budget = 150
    attack = SquareAttack.configured(norm=norm, targeted=targeted, queries=budget)
    result = attack.run(black_box, x, y, eps=EPS[norm], targets=targets, generator=seeded())
    assert perturbation_norm(result.x_adv - x, norm).max() <= EPS[norm] + TOL
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert torch.equal(result.predictions, predict(small_cnn, result.x_adv))
    expected = result.predictions == targets if targeted else result.predictions != y
    assert torch.equal(result.success, expected)
    assert result.success.float().mean() > (0.2 if targeted else 0.5)
    queries = result.queries
    assert queries is not None and queries.dtype == torch.long
    assert queries.min() >= 1 and queries.max() <= budget
    assert int(queries.sum()) + len(x) == classifier.queries  # the search's queries, then the judge's pass
    assert (queries[~result.success] == budget).all()  # only broken samples stop early
    assert queries[result.success].float().mean() < budget


def test_no_gradient_path_is_needed_or_used(small_cnn, samples, cnn_onnx):
    x, y = samples
    no_graph = query_only_without_gradients(cnn_onnx, x[:4])
    result = SquareAttack.configured(queries=300).run(no_graph, x, y, eps=0.2, generator=seeded())
    assert _robust(result, y) < 0.5  # clean accuracy on these samples is 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_onnxruntime_and_torch_module_agree_for_a_seed(small_cnn, samples, cnn_onnx, norm):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    attack = SquareAttack.configured(norm=norm, queries=200)
    eps = EPS[norm] / 1.5
    on_onnx = attack.run(black_box, x, y, eps=eps, generator=seeded(3))
    on_torch = attack.run(small_cnn, x, y, eps=eps, generator=seeded(3))
    assert abs(_robust(on_onnx, y) - _robust(on_torch, y)) <= 0.02
    assert (on_onnx.success == on_torch.success).float().mean() >= 0.95
    assert abs(on_onnx.queries.float().mean() - on_torch.queries.float().mean()) <= 10


def test_deterministic_under_a_seed(samples, cnn_onnx):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    runs = [
        SquareAttack.configured(queries=60).run(black_box, x, y, eps=0.1, generator=seeded(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].queries, runs[1].queries)
    other = SquareAttack.configured(queries=60).run(black_box, x, y, eps=0.1, generator=seeded(6))
    assert not torch.equal(runs[0].x_adv, other.x_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_custom_input_range_is_respected(small_cnn, samples, norm):
    """A model taking inputs in [-1, 1]: adversarial inputs stay in that range and in the ball."""
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: small_cnn((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = samples
    x = x * 2.0 - 1.0
    eps = 2 * EPS[norm]
    result = SquareAttack.configured(norm=norm, queries=200, input_range=(-1.0, 1.0)).run(
        wrapped, x, y, eps=eps, generator=seeded()
    )
    assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
    assert perturbation_norm(result.x_adv - x, norm).max() <= eps + TOL
    assert result.success.float().mean() > 0.5


def test_restarts_only_add_successes(samples, cnn_onnx):
    x, y = samples
    black_box, _ = onnx_black_box(cnn_onnx)
    one = SquareAttack.configured(queries=40, restarts=1).run(black_box, x, y, eps=0.1, generator=seeded(7))
    three = SquareAttack.configured(queries=40, restarts=3).run(black_box, x, y, eps=0.1, generator=seeded(7))
    assert not (one.success & ~three.success).any()
    assert three.success.sum() > one.success.sum()
    assert three.queries.max() <= 3 * 40
    assert torch.equal(three.queries[one.success], one.queries[one.success])


def test_zero_eps_and_non_image_inputs(small_cnn, samples):
    x, y = samples
    result = SquareAttack.configured().run(small_cnn, x, y, eps=0.0)
    assert torch.equal(result.x_adv, x) and (result.queries == 1).all() and not result.success.any()
    with pytest.raises(ValueError, match="image"):
        SquareAttack.configured().run(
            nn.Sequential(nn.Unflatten(1, (1, 8, 8)), small_cnn), x.flatten(1), y, eps=0.1
        )


def test_p_schedule_and_initialisations():
    assert p_schedule(0.8, 0, 10000) == 0.8 and p_schedule(0.8, 10, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4 and p_schedule(0.8, 51, 10000) == 0.2
    assert p_schedule(0.8, 9999, 10000) == pytest.approx(0.8 / 512)
    assert p_schedule(0.8, 2, 1000) == 0.4  # rescaled: iteration 2 of 1000 is 20 of 10000
    pattern = square_pattern(5, seeded())
    assert pattern.norm().item() == pytest.approx(1.0)
    assert {pattern.sum(dim=1).sign().unique().numel(), pattern.sum(dim=0).sign().unique().numel()} == {1, 2}
    x = torch.full((4, 3, 10, 10), 0.5)
    start = l2_init(x, 1.0, (0.0, 1.0), seeded())
    assert torch.allclose(perturbation_norm(start - x, "l2"), torch.ones(4), atol=1e-5)
    stripes = SquareAttack.configured()._init(x, 0.2, seeded())
    assert torch.allclose((stripes - x).abs(), torch.full_like(x, 0.2))
    assert (stripes - x).std(dim=2).max() == 0  # vertical stripes: constant along each column


def test_parameters_and_spec():
    attack = SquareAttack.configured(norm="l2", eps=[1.0], queries=300, p_init=0.3, restarts=2)
    with pytest.raises(ValidationError, match="steps\n  Extra inputs are not permitted"):
        SquareAttack.configured(norm="l2", eps=[1.0], steps=9)
    assert (attack.norm, attack.queries, attack.p_init, attack.restarts) == ("l2", 300, 0.3, 2)
    spec = SquareParams(name="square", norm="l2", eps=[1.0], queries=300, restarts=2)
    assert spec.passes_per_sample() == 600 and not attack.requires_gradients and not attack.minimum_norm
    assert SquareAttack.configured().params()["queries"] == 5000 and SquareAttack.configured().p_init == 0.8
    for bad in ({"queries": 0}, {"p_init": 0.0}, {"p_init": 1.5}, {"restarts": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            SquareAttack.configured(**bad)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_strength_parity_with_art_and_torchattacks(small_cnn, samples, norm, eps):
    """Same model, samples, eps and budget (1000 queries, reduced from 5000 for speed)."""
    import torchattacks
    from art.attacks.evasion import SquareAttack as ArtSquare
    from art.estimators.classification import PyTorchClassifier

    x, y = samples
    budget = 1000
    ours = _robust(
        SquareAttack.configured(norm=norm, queries=budget).run(small_cnn, x, y, eps=eps, generator=seeded()),
        y,
    )
    reference = torchattacks.Square(
        small_cnn, norm="Linf" if norm == "linf" else "L2", eps=eps, n_queries=budget, seed=0
    )
    theirs_torchattacks = (predict(small_cnn, reference(x, y)) == y).float().mean().item()
    classifier = PyTorchClassifier(
        small_cnn, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0)
    )
    art_attack = ArtSquare(
        classifier, norm=np.inf if norm == "linf" else 2, eps=eps, max_iter=budget, verbose=False
    )
    np.random.seed(0)  # ART draws from NumPy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_art = torch.as_tensor(art_attack.generate(x.numpy(), y.numpy()))
    theirs_art = (predict(small_cnn, x_art) == y).float().mean().item()
    assert ours <= theirs_art + 0.01, (ours, theirs_art)
    assert ours <= theirs_torchattacks + 0.01, (ours, theirs_torchattacks)
