"""AutoAttack: per-sample worst case over its components, honesty, breakdown and reference parity."""

import sys
from types import ModuleType

import numpy as np
import pytest
import torch
import torchattacks
from art.attacks.evasion import AutoAttack as ArtAutoAttack
from art.attacks.evasion import AutoProjectedGradientDescent
from art.attacks.evasion import SquareAttack as ArtSquareAttack
from art.estimators.classification import PyTorchClassifier
from pydantic import ValidationError
from torch import nn

from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.apgd import APGD
from worker.engine.evasion.attacks.autoattack import AutoAttack
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.progress import ProgressTracker

EPS = {"linf": 0.1, "l2": 1.0}
TOL = 1e-5
REFERENCE_NORM = {"linf": "Linf", "l2": "L2"}


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 100 held-out digits the CNN classifies correctly (what the runner attacks)."""
    return clean_correct(small_cnn, held_out, 110)


@pytest.fixture(scope="module")
def standard(small_cnn, samples) -> dict[str, tuple[AutoAttack, torch.Tensor, torch.Tensor]]:
    """The standard version at its full budget, per norm: (attack, x_adv, success)."""
    x, y = samples
    runs = {}
    for norm, eps in EPS.items():
        attack = AutoAttack.configured(norm=norm)
        result = attack.run(small_cnn, x, y, eps=eps, generator=seeded())
        runs[norm] = (attack, result.x_adv, result.success)
    return runs


def _wrap(forward) -> nn.Module:
    module = nn.Sequential(nn.Identity())
    module.forward = forward  # type: ignore[method-assign]
    return module


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_honest_results_and_breakdown(small_cnn, samples, standard, norm):
    x, y = samples
    attack, x_adv, success = standard[norm]
    assert perturbation_norm(x_adv - x, norm).max() <= EPS[norm] + TOL
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert torch.equal(success, predict(small_cnn, x_adv) != y)
    breakdown = attack.breakdown(EPS[norm])
    assert breakdown["attacked"] == len(x) and breakdown["robust"] == int((~success).sum())
    assert sum(breakdown["broken"].values()) + breakdown["robust"] == len(x)
    assert (
        list(breakdown["broken"]) == ["apgd-ce", "apgd-t", "fab-t", "square"] and breakdown["skipped"] == {}
    )
    # APGD-CE runs first from the same generator state: its successes are a subset.
    alone = APGD.configured(norm=norm).run(small_cnn, x, y, eps=EPS[norm], generator=seeded())
    assert not (alone.success & ~success).any()
    assert breakdown["broken"]["apgd-ce"] == int(alone.success.sum())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_parity_with_torchattacks_standard(small_cnn, samples, standard, norm):
    x, y = samples
    reference = torchattacks.AutoAttack(
        small_cnn, norm=REFERENCE_NORM[norm], eps=EPS[norm], version="standard", n_classes=10, seed=0
    )
    theirs = (predict(small_cnn, reference(x, y)) == y).float().mean()
    ours = (~standard[norm][2]).float().mean()
    assert ours <= theirs + 0.01
    assert ours < (0.75 if norm == "linf" else 0.05)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_parity_with_art_autoattack(small_cnn, samples, monkeypatch, norm):
    """ART's AutoAttack with APGD-CE and APGD-DLR (100 iterations, 1 start) and Square, both sides
    with 1000 Square queries (a smaller budget than 5000, identical on both sides)."""
    monkeypatch.setitem(sys.modules, "multiprocess", ModuleType("multiprocess"))  # imported, unused serially
    x, y = samples
    eps, p = EPS[norm], (np.inf if norm == "linf" else 2)
    classifier = PyTorchClassifier(
        model=small_cnn,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    components = [
        AutoProjectedGradientDescent(
            classifier,
            norm=p,
            eps=eps,
            eps_step=2 * eps,
            max_iter=100,
            nb_random_init=1,
            batch_size=256,
            loss_type=loss,
            verbose=False,
        )  # fmt: skip
        for loss in ("cross_entropy", "difference_logits_ratio")
    ]
    components.append(ArtSquareAttack(classifier, norm=p, eps=eps, max_iter=1000, p_init=0.8, nb_restarts=1))
    np.random.seed(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        art = ArtAutoAttack(classifier, norm=p, eps=eps, attacks=components, batch_size=256)
        theirs = (
            (predict(small_cnn, torch.as_tensor(art.generate(x.numpy(), y=y.numpy()))) == y).float().mean()
        )
    ours = AutoAttack.configured(norm=norm, square_queries=1000).run(
        small_cnn, x, y, eps=eps, generator=seeded()
    )
    assert (~ours.success).float().mean() <= theirs + 0.01


def test_rand_version_averages_gradients_over_draws(small_cnn, samples):
    x, y = samples[0][:40], samples[1][:40]
    calls = []

    def noisy(z: torch.Tensor) -> torch.Tensor:
        calls.append(len(z))
        return small_cnn(z + 0.05 * torch.randn_like(z))

    attack = AutoAttack.configured(version="rand", steps=10, eot_iter=4)
    result = attack.run(_wrap(noisy), x, y, eps=0.1, generator=seeded())
    assert attack.params()["components"] == ["apgd-ce", "apgd-dlr"] and attack.params()["eot_iter"] == 4
    assert perturbation_norm(result.x_adv - x, "linf").max() <= 0.1 + TOL
    assert result.success.float().mean() > 0.2
    assert len(calls) >= 11 * 4  # every APGD step draws eot_iter gradients
    # run's verifying pass is a fresh draw of the randomized model: within a sample or two of the breakdown
    assert abs(sum(attack.breakdown(0.1)["broken"].values()) - int(result.success.sum())) <= 2


def test_components_that_cannot_run_are_skipped_and_reported(small_cnn, mlp, samples):
    x, y = samples
    three = (y < 3).nonzero()[:, 0]
    sliced = _wrap(lambda z: small_cnn(z)[:, :3])
    attack = AutoAttack.configured(steps=10, square_queries=50)
    for _ in range(2):
        result = attack.run(sliced, x[three], y[three], eps=0.1, generator=seeded())
    row = attack.breakdown(0.1)
    assert row["attacked"] == 2 * len(three)  # summed over both batches
    assert "4 classes" in row["skipped"]["apgd-t"] and row["broken"]["apgd-t"] == 0
    assert "apgd-t" in attack.params()["components_skipped"]
    assert perturbation_norm(result.x_adv - x[three], "linf").max() <= 0.1 + TOL
    flat = _wrap(lambda z: mlp(z.reshape(-1, 1, 8, 8)))
    no_square = AutoAttack.configured(steps=5, n_target_classes=2)
    no_square.run(flat, x[:30].reshape(30, -1), y[:30], eps=0.1, generator=seeded())
    assert "image inputs" in no_square.breakdown(0.1)["skipped"]["square"]
    disabled = AutoAttack.configured(steps=5, n_target_classes=2, use_square=False)
    disabled.run(small_cnn, x[:30], y[:30], eps=0.1, generator=seeded())
    assert (
        "use_square" in disabled.breakdown(0.1)["skipped"]["square"] and disabled.params()["square"] is None
    )


def test_deterministic_under_a_seed_and_in_other_input_ranges(mlp, samples):
    x, y = samples[0][:40] * 2.0 - 1.0, samples[1][:40]
    wrapped = _wrap(lambda z: mlp((z + 1.0) / 2.0))
    runs = [
        AutoAttack.configured(
            norm=norm, steps=10, n_target_classes=3, square_queries=100, input_range=(-1.0, 1.0)
        ).run(wrapped, x, y, eps=2 * EPS[norm], generator=seeded(4))
        for norm in ("linf", "linf", "l2")
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    for norm, result in zip(("linf", "l2"), runs[1:], strict=True):
        assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
        assert perturbation_norm(result.x_adv - x, norm).max() <= 2 * EPS[norm] + TOL
        assert result.success.float().mean() > 0.3


def test_runner_results_match_the_breakdown(small_cnn, held_out):
    """Through evaluate_attack (two batches, two eps): robust counts agree with the per-eps breakdown."""
    x, y = torch.as_tensor(held_out[0][:60]), torch.as_tensor(held_out[1][:60])
    with torch.no_grad():
        logits = small_cnn(x)
    clean_correct = logits.argmax(1) == y
    attack = AutoAttack.configured(steps=10, n_target_classes=3, square_queries=50)
    entry, arrays = evaluate_attack(
        small_cnn, attack, {"eps": [0.05, 0.1], "targeted": False},
        EvaluationData(x, y, logits, clean_correct, batch_bounds(len(x), 30)), index=0, seed=0,
        device=torch.device("cpu"), progress=ProgressTracker(1.0, None), worst=WorstCase(len(x)),
    )  # fmt: skip
    for position, row in enumerate(entry["results"]):
        breakdown = attack.breakdown(row["eps"])
        assert breakdown["attacked"] == int(clean_correct.sum())
        assert round(row["robust_accuracy"] * len(x)) == breakdown["robust"]
        assert int(arrays["success"][position].sum()) == sum(breakdown["broken"].values())
    assert entry["results"][1]["robust_accuracy"] <= entry["results"][0]["robust_accuracy"]
    assert entry["params"]["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_validation_and_spec():
    with pytest.raises(ValidationError, match="untargeted"):
        AutoAttack.configured(targeted=True, target_mode="random")
    for bad in ({"version": "plus"}, {"steps": 0}, {"n_target_classes": 0}, {"square_queries": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            AutoAttack.configured(**bad)
    attack = AutoAttack.configured(norm="l2", eps=[0.5], version="rand", eot_iter=5)
    assert (attack.norm, attack.version, attack.eot_iter, attack.steps) == ("l2", "rand", 5, 100)
    assert AutoAttack.requires_gradients and not AutoAttack.minimum_norm
    params = AutoAttack.configured().params()
    assert (
        params["components"] == ["apgd-ce", "apgd-t", "fab-t", "square"] and params["n_target_classes"] == 9
    )
