"""FGSM, PGD, targets and norms: threat-model bounds, strength, reference agreement, determinism."""

from typing import Annotated

import numpy as np
import pytest
import torch
from pydantic import Field, ValidationError
from torch import nn
from torch.nn import functional

from app.schemas.evasion import AttackParamsBase, FgsmParams, PgdParams
from worker.engine.evasion.attacks.base import REGISTERED, Attack
from worker.engine.evasion.attacks.fgsm import FGSM
from worker.engine.evasion.attacks.norms import perturbation_norm, project_ball, random_in_ball
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.evasion.attacks.registry import attack_type, build_attack, registered_attacks
from worker.engine.evasion.attacks.targets import attackable, select_targets

EPS = {"linf": 0.1, "l2": 1.0}
TOL = 1e-5


def _tensors(
    held_out: tuple[np.ndarray, np.ndarray], n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = held_out
    return torch.as_tensor(x[:n]), torch.as_tensor(y[:n])


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def _reference_pgd(model, x, y, *, eps, steps, step_size, norm):
    """A plain Madry et al. loop: no random start, full-batch, written independently of the engine."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = functional.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = x_adv + step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
            else:
                g = grad.flatten(1)
                g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
                x_adv = x_adv + step_size * g.view_as(x)
                delta = (x_adv - x).flatten(1)
                scale = (eps / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
                x_adv = x + (delta * scale).view_as(x)
            x_adv = x_adv.clamp(0.0, 1.0)
    return x_adv.detach()


def _make(cls: type[Attack], norm: str, targeted: bool, **kwargs) -> Attack:
    if cls is PGD:
        kwargs.setdefault("steps", 10)
    return cls.configured(norm=norm, targeted=targeted, **kwargs)


@pytest.mark.parametrize("cls", [FGSM, PGD])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_adversarial_inputs_stay_in_ball_and_range(small_cnn, held_out, cls, norm, targeted):
    x, y = _tensors(held_out, 128)
    targets = (y + 1) % 10 if targeted else None
    attack = _make(cls, norm, targeted)
    result = attack.run(small_cnn, x, y, eps=EPS[norm], targets=targets, generator=_generator())
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert perturbation_norm(result.x_adv - x, norm).max() <= EPS[norm] + TOL
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert torch.equal(result.predictions, _predict(small_cnn, result.x_adv))
    expected = result.predictions == targets if targeted else result.predictions != y
    assert torch.equal(result.success, expected)
    assert result.success.any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_custom_input_range_is_respected(mlp, held_out, norm):
    """A model taking inputs in [-1, 1]: adversarial inputs stay in that range and the ball."""
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: mlp((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = _tensors(held_out, 64)
    x = x * 2.0 - 1.0
    attack = PGD.configured(norm=norm, steps=10, input_range=(-1.0, 1.0))
    result = attack.run(wrapped, x, y, eps=2 * EPS[norm], generator=_generator())
    assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
    assert perturbation_norm(result.x_adv - x, norm).max() <= 2 * EPS[norm] + TOL
    assert result.success.float().mean() > 0.2


def test_pgd_drives_accuracy_well_below_clean(small_cnn, held_out):
    x, y = _tensors(held_out)
    clean = (_predict(small_cnn, x) == y).float().mean().item()
    result = PGD.configured(norm="linf").run(small_cnn, x, y, eps=0.1, generator=_generator())
    robust = (result.predictions == y).float().mean().item()
    assert clean > 0.9
    assert robust < clean - 0.25


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_matches_a_plain_reference_loop(small_cnn, held_out, norm):
    x, y = _tensors(held_out)
    eps, steps = EPS[norm], 20
    step_size = 2.5 * eps / steps
    reference = _reference_pgd(small_cnn, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm)
    ours = PGD.configured(norm=norm, steps=steps, random_start=False).run(
        small_cnn, x, y, eps=eps, generator=_generator()
    )
    reference_acc = (_predict(small_cnn, reference) == y).float().mean().item()
    ours_acc = (ours.predictions == y).float().mean().item()
    assert abs(ours_acc - reference_acc) <= 0.02
    assert ours.x_adv.sub(reference).abs().max() < 1e-3 or norm == "l2"


def test_default_step_size_is_madry_rule():
    attack = PGD.configured(steps=40)
    assert attack.step_size_for(0.1) == pytest.approx(2.5 * 0.1 / 40)
    assert PGD.configured(step_size=0.01).step_size_for(0.3) == 0.01
    assert attack.params()["step_size"] is None and attack.params()["step_size_rule"]


@pytest.mark.parametrize("cls", [FGSM, PGD])
def test_targeted_success_means_prediction_equals_target(small_cnn, held_out, cls):
    x, y = _tensors(held_out, 128)
    targets = select_targets("random", y, num_classes=10, generator=_generator(3))
    result = _make(cls, "linf", True).run(small_cnn, x, y, eps=0.3, targets=targets, generator=_generator())
    predictions = _predict(small_cnn, result.x_adv)
    assert torch.equal(result.success, predictions == targets)
    assert result.success.float().mean() > (0.5 if cls is PGD else 0.05)


def test_targeted_attack_requires_targets(small_cnn, held_out):
    x, y = _tensors(held_out, 8)
    with pytest.raises(ValueError, match="targets"):
        PGD.configured(targeted=True).run(small_cnn, x, y, eps=0.1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_make_things_worse(small_cnn, held_out, norm):
    x, y = _tensors(held_out)
    eps = EPS[norm] / 2
    one = PGD.configured(norm=norm, steps=10, restarts=1).run(
        small_cnn, x, y, eps=eps, generator=_generator(7)
    )
    many = PGD.configured(norm=norm, steps=10, restarts=4).run(
        small_cnn, x, y, eps=eps, generator=_generator(7)
    )
    assert not (one.success & ~many.success).any()
    assert many.success.sum() >= one.success.sum()
    assert perturbation_norm(many.x_adv - x, norm).max() <= eps + TOL


def test_pgd_is_deterministic_under_a_seed(small_cnn, held_out):
    x, y = _tensors(held_out, 64)
    runs = [PGD.configured(steps=5).run(small_cnn, x, y, eps=0.1, generator=_generator(11)) for _ in range(2)]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    other = PGD.configured(steps=5).run(small_cnn, x, y, eps=0.1, generator=_generator(12))
    assert not torch.equal(runs[0].x_adv, other.x_adv)


def test_attack_does_not_touch_parameter_gradients(small_cnn, held_out):
    x, y = _tensors(held_out, 32)
    params = list(small_cnn.parameters())
    before = [None if p.grad is None else p.grad.clone() for p in params]
    PGD.configured(steps=3).run(small_cnn, x, y, eps=0.1)
    for param, grad in zip(params, before, strict=True):
        assert param.requires_grad
        assert (param.grad is None and grad is None) or torch.equal(param.grad, grad)


def test_zero_eps_leaves_inputs_unchanged(small_cnn, held_out):
    x, y = _tensors(held_out, 32)
    for attack in (FGSM.configured(), PGD.configured(steps=3), PGD.configured(norm="l2", steps=3)):
        assert torch.equal(attack.run(small_cnn, x, y, eps=0.0).x_adv, x)


def test_invalid_parameters_are_refused(small_cnn, held_out):
    x, y = _tensors(held_out, 4)
    # The limits live in the spec: configured() validates it.
    with pytest.raises(ValidationError, match="steps"):
        PGD.configured(steps=0)
    with pytest.raises(ValidationError, match="restarts"):
        PGD.configured(restarts=0)
    with pytest.raises(ValidationError, match="step_size"):
        PGD.configured(step_size=-1.0)
    with pytest.raises(ValidationError, match="norm"):
        FGSM.configured(norm="l1")
    with pytest.raises(ValueError):
        FGSM.configured().run(small_cnn, x, y, eps=-0.1)


def test_registry_by_spec_type_and_building_from_typed_specs():
    registered = registered_attacks()
    assert registered[FgsmParams] is FGSM and registered[PgdParams] is PGD
    assert all(cls.spec_type is spec_type for spec_type, cls in registered.items())
    spec = PgdParams(
        name="pgd", norm="l2", eps=[1.0], targeted=True, target_mode="random", steps=7, random_start=False,
        restarts=2,
    )  # fmt: skip
    attack = build_attack(spec, (-1.0, 1.0))
    assert isinstance(attack, PGD) and attack.name == "pgd"
    assert (attack.norm, attack.targeted, attack.steps, attack.restarts) == ("l2", True, 7, 2)
    assert attack.step_size is None and attack.random_start is False and attack.input_range == (-1.0, 1.0)
    assert attack.spec is spec and PGD(spec, input_range=(-1.0, 1.0)).params() == attack.params()
    fgsm = FGSM.configured(norm="l2", eps=[1.0])
    assert isinstance(fgsm, FGSM) and fgsm.norm == "l2" and isinstance(fgsm.spec, FgsmParams)
    with pytest.raises(ValidationError, match="unknown_extra"):
        PGD.configured(**{**spec.model_dump(), "unknown_extra": 1})
    with pytest.raises(ValidationError, match="name"):
        PGD.configured(name="fgsm", steps=7)
    with pytest.raises(TypeError, match="built from a PgdParams"):
        PGD(FgsmParams(name="fgsm", eps=[0.1]))  # type: ignore[arg-type]

    class SlowPgdParams(PgdParams):
        """A spec subclass without an engine class of its own runs on its base's."""

    assert attack_type(SlowPgdParams) is PGD
    with pytest.raises(ValueError, match="no engine attack"):
        attack_type(AttackParamsBase)


def test_a_new_attack_is_one_spec_class_and_one_engine_class_reading_it():
    class WiderParams(FgsmParams):
        """A spec with a field of its own: its default and limits live here only."""

        momentum: Annotated[float, Field(ge=0, le=1)] = 0.9

    class Wider(FGSM):
        """An engine class that reads the new field from its spec."""

        spec_type = WiderParams

        def __init__(self, spec: WiderParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
            super().__init__(spec, input_range=input_range)
            self.momentum = spec.momentum

    try:
        assert attack_type(WiderParams) is Wider and Wider.name == "fgsm"
        assert Wider.configured().momentum == 0.9 and Wider.configured(momentum=0.5).momentum == 0.5
        built = build_attack(WiderParams(name="fgsm", eps=[0.1], momentum=0.25), (0.0, 1.0))
        assert isinstance(built, Wider) and built.momentum == 0.25
        with pytest.raises(ValidationError, match="momentum"):
            Wider.configured(momentum=2.0)
    finally:
        REGISTERED.pop(WiderParams, None)


def test_target_modes():
    logits = torch.tensor([[5.0, 1.0, -2.0], [0.0, 3.0, 1.0], [-9.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    assert select_targets("least_likely", y, num_classes=3, clean_logits=logits).tolist() == [2, 0, 1]
    y_many = torch.randint(0, 10, (5000,), generator=_generator(1))
    drawn = select_targets("random", y_many, num_classes=10, generator=_generator(2))
    assert (drawn != y_many).all() and drawn.min() >= 0 and drawn.max() <= 9
    assert torch.bincount(drawn, minlength=10).min() > 350
    again = select_targets("random", y_many, num_classes=10, generator=_generator(2))
    assert torch.equal(drawn, again)
    fixed = select_targets("fixed", y, num_classes=3, target_class=0)
    assert fixed.tolist() == [0, 0, 0]
    assert attackable(y, fixed).tolist() == [False, True, False]
    with pytest.raises(ValueError):
        select_targets("fixed", y, num_classes=3, target_class=3)
    with pytest.raises(ValueError):
        select_targets("nearest", y, num_classes=3)


def test_norm_helpers():
    like = torch.zeros(500, 1, 8, 8)
    for norm, eps in EPS.items():
        sample = random_in_ball(like, eps, norm, _generator())  # type: ignore[arg-type]
        sizes = perturbation_norm(sample, norm)  # type: ignore[arg-type]
        assert sizes.max() <= eps + TOL
        if norm == "linf":
            assert sizes.mean() > 0.8 * eps  # the largest coordinate of a uniform cube point is near eps
        else:
            assert 0.4 * eps < sizes.mean() < 0.6 * eps  # radius uniform in [0, eps]
    big = torch.randn(10, 3, 4, 4) * 10
    projected = project_ball(big, 0.5, "l2")
    assert torch.allclose(perturbation_norm(projected, "l2"), torch.full((10,), 0.5), atol=1e-5)
    small = torch.full((2, 3), 0.01)
    assert torch.equal(project_ball(small, 0.5, "l2"), small)
