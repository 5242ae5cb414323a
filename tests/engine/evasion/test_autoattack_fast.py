"""AutoAttack's accelerated standard path and its fast version, against the unaccelerated reference."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import AutoAttackParams
from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.evasion.attacks.apgd import apgd_search
from worker.engine.evasion.attacks.autoattack import AutoAttack
from worker.engine.evasion.attacks.autoattack_check import allowed_misses
from worker.engine.evasion.attacks.dlr import ce_objective, misclassified
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.attacks.target_ranking import linear_distances, rank_by_linear_distance

EPS = {"linf": 0.1, "l2": 1.0}
TOL = 1e-5
# A budget small enough for a test, large enough that every component breaks or tries something.
SMALL = {"steps": 30, "square_queries": 300}


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 100 held-out digits the CNN classifies correctly."""
    return clean_correct(small_cnn, held_out, 110)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_standard_breaks_every_sample_the_unaccelerated_path_breaks(small_cnn, samples, norm):
    x, y = samples
    eps = EPS[norm] if norm == "linf" else 0.5
    runs = {}
    for accelerated in (False, True):
        attack = AutoAttack.configured(norm=norm, accelerated=accelerated, **SMALL)
        runs[accelerated] = (attack, attack.run(small_cnn, x, y, eps=eps, generator=seeded(3)))
    (slow, reference), (fast, accelerated) = runs[False], runs[True]
    assert reference.success.any() and not reference.success.all()
    assert not (reference.success & ~accelerated.success).any()
    assert slow.breakdown(eps)["broken"] == fast.breakdown(eps)["broken"]
    # The work saved is real: never more model passes than the reference, but for batched APGD-T. On
    # the samples it leaves standing it spends the loop's passes exactly (the same runs, the same
    # fixed-point exits); a sample it breaks may cost up to every target's run until it falls (the
    # price of one batch instead of a loop of them), never more.
    passes, reference_passes = fast.breakdown(eps)["passes"], slow.breakdown(eps)["passes"]
    for component in ("apgd-ce", "fab-t", "square"):
        assert passes[component] <= reference_passes[component]
    per_sample = fast.breakdown(eps)["targets"]["per_sample"] * (SMALL["steps"] + 1)
    broken_by_t = fast.breakdown(eps)["broken"]["apgd-t"]
    assert passes["apgd-t"] <= reference_passes["apgd-t"] + per_sample * broken_by_t
    assert perturbation_norm(accelerated.x_adv - x, norm).max() <= eps + TOL


def _clamped_linear(seed: int) -> nn.Module:
    """A linear classifier on inputs clamped to [0.3, 0.7]: zero gradients outside, fixed points of APGD."""
    torch.manual_seed(seed)
    linear = nn.Linear(64, 10)
    return nn.Sequential(nn.Flatten(), nn.Hardtanh(0.3, 0.7), linear)


def test_fixed_point_exit_drops_no_sample_a_later_iteration_breaks(small_cnn, samples):
    """Planted: a model where many APGD runs get stuck (zero or outward gradients everywhere); the exit
    fires there, and on it and on the trained CNN the outputs equal those of the full run exactly."""
    x, y = samples
    planted = _clamped_linear(0)
    y_planted = predict(planted, x)
    cases = [(planted, y_planted, 0.25), (small_cnn, y, 0.1)]
    fired = 0
    for model, labels, eps in cases:
        outputs = []
        for stop in (False, True):
            stats: dict[str, int] = {}
            outputs.append(
                apgd_search(
                    model,
                    x,
                    ce_objective(labels),
                    misclassified(labels),
                    eps=eps,
                    norm="linf",
                    steps=60,
                    rho=0.75,
                    eot_iter=1,
                    input_range=(0.0, 1.0),
                    generator=seeded(1),
                    stop_when_stuck=stop,
                    stats=stats,
                )  # fmt: skip
            )
            fired += stats.get("stuck", 0)
        for full, early in zip(outputs[0], outputs[1], strict=True):
            assert torch.equal(full, early)
        assert outputs[0][1].any()  # some samples do break, some late: none of them was dropped
    assert fired > 0


def test_malt_ranking_matches_a_linear_model_and_picks_the_closest_boundary():
    """On a linear model the first-order distance is exact: the top-ranked target has the nearest boundary."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    x = torch.rand(8, 1, 4, 4)
    y = predict(model, x)
    distances = linear_distances(model, x, y, "linf")
    weight, bias = model[1].weight.detach(), model[1].bias.detach()
    for i in range(len(x)):
        z = weight @ x[i].reshape(-1) + bias
        for k in range(5):
            if k == int(y[i]):
                assert torch.isinf(distances[i, k])
                continue
            exact = (z[y[i]] - z[k]) / (weight[y[i]] - weight[k]).abs().sum()
            assert torch.isclose(distances[i, k], exact, rtol=1e-4)
    ranked = rank_by_linear_distance(model, x, y, "linf", 2)
    assert torch.equal(ranked[:, 0], distances.argmin(dim=1))
    assert not (ranked == y[:, None]).any()


@pytest.mark.slow
def test_fast_is_within_tolerance_of_standard_and_reports_what_it_ran(small_cnn, samples):
    x, y = samples
    eps = EPS["linf"]
    standard = AutoAttack.configured(square_queries=1000).run(small_cnn, x, y, eps=eps, generator=seeded())
    attack = AutoAttack.configured(version="fast")
    fast = attack.run(small_cnn, x, y, eps=eps, generator=seeded())
    missed = int((standard.success & ~fast.success).sum())
    assert missed <= allowed_misses(len(x))
    assert (~fast.success).float().mean() <= (~standard.success).float().mean() + allowed_misses(
        len(x)
    ) / len(x)
    assert torch.equal(fast.success, predict(small_cnn, fast.x_adv) != y)
    assert perturbation_norm(fast.x_adv - x, "linf").max() <= eps + TOL
    row = attack.breakdown(eps)
    assert list(row["broken"]) == ["apgd-ce", "apgd-t"] and row["robust"] == int((~fast.success).sum())
    assert row["targets"] == {"ranking": "runner_up_then_malt", "per_sample": 4}
    bound = AutoAttackParams(name="autoattack", eps=[eps], version="fast").passes_per_sample()
    assert row["passes"]["apgd-t"] > 0 and 0 < row["passes_per_sample"] <= bound
    params = attack.params()
    assert params["components"] == ["apgd-ce", "apgd-t"] and params["n_target_classes"] == 4


def test_fast_version_validation():
    assert AutoAttack.configured(eps=[0.1], version="fast", fast_vs_standard=20).fast_vs_standard == 20
    with pytest.raises(ValidationError, match="fast_vs_standard"):
        AutoAttack.configured(version="fast", fast_vs_standard=-1)
    with pytest.raises(ValidationError, match="version"):
        AutoAttack.configured(version="faster")
