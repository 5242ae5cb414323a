"""APGD and the DLR losses: threat model, strength, schedule, reference agreement and parity."""

from typing import Any, Self

import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.evasion import AutoProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier
from pydantic import ValidationError, model_validator
from torch import nn

from app.schemas.evasion import ApgdParams
from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.evasion.attacks.apgd import APGD, checkpoints
from worker.engine.evasion.attacks.dlr import dlr_loss, targeted_dlr_loss
from worker.engine.evasion.attacks.norms import perturbation_norm

EPS = {"linf": 0.1, "l2": 1.0}
TOL = 1e-5
REFERENCE_NORM = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 140 held-out digits the CNN classifies correctly (what the runner attacks)."""
    return clean_correct(small_cnn, held_out, 150)


def _robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x_adv) == y).float().mean().item()


class _Counting(nn.Module):
    """Counts forward passes of a wrapped model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


class _TargetedCeParams(ApgdParams):
    """APGD's spec without its rule that targeted means the DLR loss: jobs cannot ask for targeted
    cross-entropy, but the engine's objective for it stays tested."""

    @model_validator(mode="after")
    def _targeted_needs_dlr(self) -> Self:
        return self


def _apgd(**fields: Any) -> APGD:
    """APGD configured from fields; targeted cross-entropy through the relaxed spec above."""
    if fields.get("targeted") and fields.get("loss", "ce") == "ce":
        return APGD(_TargetedCeParams(name="apgd", eps=[1.0], target_mode="random", **fields))
    return APGD.configured(**fields)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize(("loss", "targeted"), [("ce", False), ("dlr", False), ("ce", True), ("dlr", True)])
def test_inside_ball_and_range_and_success_is_honest(small_cnn, samples, norm, loss, targeted):
    x, y = samples
    targets = (y + 1) % 10 if targeted else None
    eps = EPS[norm] * (2 if targeted else 1)
    attack = _apgd(norm=norm, loss=loss, targeted=targeted, steps=10)
    result = attack.run(small_cnn, x, y, eps=eps, targets=targets, generator=seeded())
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert perturbation_norm(result.x_adv - x, norm).max() <= eps + TOL
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert torch.equal(result.predictions, predict(small_cnn, result.x_adv))
    expected = result.predictions == targets if targeted else result.predictions != y
    assert torch.equal(result.success, expected)
    assert result.success.float().mean() > 0.2


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_input_range_minus_one_to_one(mlp, held_out, norm):
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: mlp((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = torch.as_tensor(held_out[0][:64]) * 2.0 - 1.0, torch.as_tensor(held_out[1][:64])
    result = APGD.configured(norm=norm, steps=20, input_range=(-1.0, 1.0)).run(
        wrapped, x, y, eps=2 * EPS[norm], generator=seeded()
    )
    assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
    assert perturbation_norm(result.x_adv - x, norm).max() <= 2 * EPS[norm] + TOL
    assert result.success.float().mean() > 0.3


def test_checkpoints_follow_the_paper_schedule():
    # p_j = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations.
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]  # windows 2, then the minimum of 1
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert APGD.configured().params()["checkpoints"] == checkpoints(100)


def test_cost_is_one_forward_and_backward_per_step(small_cnn, samples):
    x, y = samples
    counting = _Counting(small_cnn)
    APGD.configured(steps=15, restarts=2).run(counting, x[:20], y[:20], eps=0.01, generator=seeded())
    assert counting.calls <= 2 * 16 + 1 + 1  # the search, then run's verifying forward pass


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_agrees_with_torchattacks_from_the_same_start(small_cnn, samples, norm):
    """Same seed, same random start: the reference's APGD breaks (almost) exactly the same samples."""
    x, y = samples
    ours = APGD.configured(norm=norm, steps=25).run(small_cnn, x, y, eps=EPS[norm] / 2, generator=seeded(3))
    reference = torchattacks.APGD(small_cnn, norm=REFERENCE_NORM[norm], eps=EPS[norm] / 2, steps=25, seed=3)
    theirs = predict(small_cnn, reference(x, y)) != y
    assert (ours.success != theirs).sum() <= 2


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_trajectory_matches_the_reference_step_for_step(small_cnn, samples, norm):
    """From the same start, the highest-loss point of every unbroken sample is the reference's.

    This pins the momentum, the checkpoints, the step-size halving and the restart from the best
    point: any difference there sends the trajectories apart.
    """
    x, y = samples
    eps = EPS[norm] / 2
    ours = APGD.configured(norm=norm, steps=100).run(small_cnn, x, y, eps=eps, generator=seeded(3))
    reference = torchattacks.APGD(small_cnn, norm=REFERENCE_NORM[norm], eps=eps, steps=100, seed=3)
    torch.manual_seed(3)  # the reference's best-loss mode draws its start from the global generator
    _, best = reference.perturb(x, y, best_loss=True)
    unbroken = ~ours.success
    gap = (ours.x_adv[unbroken] - best[unbroken]).flatten(1).abs().amax(dim=1)
    assert unbroken.sum() > 40
    assert (gap < 1e-5).float().mean() >= 0.9


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_strength_parity_with_torchattacks_and_art(small_cnn, samples, norm):
    """APGD-CE, 100 iterations, 1 restart: robust accuracy no higher than the references' + 0.01."""
    x, y = samples
    eps = EPS[norm]
    ours = APGD.configured(norm=norm).run(small_cnn, x, y, eps=eps, generator=seeded())
    ours_robust = (ours.predictions == y).float().mean().item()
    ta = torchattacks.APGD(small_cnn, norm=REFERENCE_NORM[norm], eps=eps, steps=100, seed=0)
    classifier = PyTorchClassifier(
        model=small_cnn,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    art = AutoProjectedGradientDescent(
        classifier, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=2 * eps, max_iter=100,
        nb_random_init=1, batch_size=256, loss_type="cross_entropy", verbose=False,
    )  # fmt: skip
    np.random.seed(0)  # ART draws its random start from NumPy's global generator
    ta_robust = _robust(small_cnn, ta(x, y), y)
    art_robust = _robust(small_cnn, torch.as_tensor(art.generate(x.numpy(), y=y.numpy())), y)
    assert ours_robust <= ta_robust + 0.01
    assert ours_robust <= art_robust + 0.01
    assert ours_robust < 0.75 if norm == "linf" else ours_robust < 0.1


def test_dlr_strength_parity_with_torchattacks(small_cnn, samples):
    x, y = samples
    ours = APGD.configured(loss="dlr", steps=50).run(small_cnn, x, y, eps=0.1, generator=seeded())
    reference = torchattacks.APGD(small_cnn, eps=0.1, steps=50, loss="dlr", seed=0)
    assert (ours.predictions == y).float().mean() <= _robust(small_cnn, reference(x, y), y) + 0.01


def test_targeted_success_means_prediction_equals_target(small_cnn, samples):
    x, y = samples
    targets = (y + 3) % 10
    for loss in ("ce", "dlr"):
        result = _apgd(targeted=True, loss=loss, steps=30).run(
            small_cnn, x, y, eps=0.3, targets=targets, generator=seeded()
        )
        assert torch.equal(result.success, predict(small_cnn, result.x_adv) == targets)
        assert result.success.float().mean() > 0.8


def test_deterministic_under_a_seed(small_cnn, samples):
    x, y = samples
    runs = [APGD.configured(steps=5).run(small_cnn, x, y, eps=0.05, generator=seeded(11)) for _ in range(2)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    other = APGD.configured(steps=5).run(small_cnn, x, y, eps=0.05, generator=seeded(12))
    assert not torch.equal(runs[0].x_adv, other.x_adv)


def test_restarts_never_make_things_worse(small_cnn, samples):
    x, y = samples
    one = APGD.configured(steps=10).run(small_cnn, x, y, eps=0.05, generator=seeded(7))
    many = APGD.configured(steps=10, restarts=3).run(small_cnn, x, y, eps=0.05, generator=seeded(7))
    assert not (one.success & ~many.success).any()
    assert many.success.sum() >= one.success.sum()


def test_eot_on_a_randomised_model(small_cnn, samples):
    x, y = samples
    noisy = nn.Sequential(nn.Identity())
    noisy.forward = lambda z: small_cnn(z + 0.05 * torch.randn_like(z))  # type: ignore[method-assign]
    result = APGD.configured(steps=10, eot_iter=4).run(noisy, x[:60], y[:60], eps=0.1, generator=seeded())
    assert perturbation_norm(result.x_adv - x[:60], "linf").max() <= 0.1 + TOL
    assert _robust(small_cnn, result.x_adv, y[:60]) < 0.8


def test_parameter_gradients_untouched_and_zero_eps(small_cnn, samples):
    x, y = samples[0][:16], samples[1][:16]
    before = [p.grad for p in small_cnn.parameters()]
    result = APGD.configured(steps=3).run(small_cnn, x, y, eps=0.0)
    assert torch.equal(result.x_adv, x) and not result.success.any()
    assert all(p.grad is g for p, g in zip(small_cnn.parameters(), before, strict=True))


def test_invalid_parameters_and_spec():
    for bad in ({"steps": 0}, {"restarts": 0}, {"rho": 1.5}, {"eot_iter": 0}, {"loss": "hinge"}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            APGD.configured(**bad)
    attack = APGD(ApgdParams(name="apgd", norm="l2", loss="dlr", steps=7, eps=[1.0]))
    assert (attack.norm, attack.loss, attack.steps, attack.restarts) == ("l2", "dlr", 7, 1)
    assert APGD.configured().params_at(0.1) == {"initial_step_size": pytest.approx(0.2)}


def test_dlr_losses():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, -2.0]])
    y = torch.tensor([0, 0])
    # Correct sample: -(3 - 1) / (3 - 0); wrong one: -(0 - 2) / (2 - 0).
    assert torch.allclose(dlr_loss(logits, y), torch.tensor([-2.0 / 3.0, 1.0]))
    assert torch.allclose(dlr_loss(5.0 * logits + 7.0, y), dlr_loss(logits, y), atol=1e-6)
    t = torch.tensor([2, 1])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected = torch.tensor([-3.0 / (3.0 + 0.5), 2.0 / (2.0 - (0.0 - 2.0) / 2.0)])
    assert torch.allclose(targeted_dlr_loss(logits, y, t), expected)
    with pytest.raises(ValueError, match="at least 3"):
        dlr_loss(logits[:, :2], y)
    with pytest.raises(ValueError, match="at least 4"):
        targeted_dlr_loss(logits[:, :3], y, t)
