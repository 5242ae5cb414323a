"""FAB: exact projections, minimum-norm and eps-aware modes, threat model, reference parity."""

import numpy as np
import pytest
import torch
import torchattacks
from pydantic import ValidationError
from scipy.optimize import linprog, minimize
from torch import nn

from app.schemas.evasion import FabParams
from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.base import restrict_to_budget
from worker.engine.evasion.attacks.fab import FAB
from worker.engine.evasion.attacks.fab_projection import project_onto_hyperplane_box
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
def unbounded(small_cnn, samples) -> dict[str, torch.Tensor]:
    """Minimum-norm FAB (100 steps, eps=inf) in both norms, shared by several tests."""
    x, y = samples
    return {
        norm: FAB.configured(norm=norm).run(small_cnn, x, y, eps=float("inf")).x_adv
        for norm in ("linf", "l2")
    }


def _smallest_move(t: np.ndarray, w: np.ndarray, c: float, low: float, high: float, norm: str) -> float:
    """Brute force: the norm of the smallest box-constrained move onto the hyperplane (LP / SLSQP)."""
    n = len(t)
    bounds = list(zip(low - t, high - t, strict=True))
    if norm == "linf":
        cost = np.r_[np.zeros(n), 1.0]
        upper = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        result = linprog(
            cost,
            A_ub=upper,
            b_ub=np.zeros(2 * n),
            A_eq=np.r_[w, 0.0][None],
            b_eq=[-c],
            bounds=[*bounds, (0, None)],
        )
        return float(result.fun)
    result = minimize(
        lambda d: d @ d, np.zeros(n), jac=lambda d: 2 * d, bounds=bounds, method="SLSQP",
        constraints=[{"type": "eq", "fun": lambda d: w @ d + c, "jac": lambda d: w}], options={"ftol": 1e-14},
    )  # fmt: skip
    return float(np.sqrt(result.fun))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-1.0, 1.0)])
def test_projection_is_the_smallest_move_inside_the_box(norm, low, high):
    rng = np.random.default_rng(0)
    t = rng.uniform(low, high, (40, 6))
    w = rng.normal(size=(40, 6)) * (rng.uniform(size=(40, 6)) > 0.2)
    c = rng.normal(size=40) * 0.5
    moves = project_onto_hyperplane_box(
        torch.as_tensor(t), torch.as_tensor(w), torch.as_tensor(c), low=low, high=high, norm=norm
    ).numpy()
    assert (t + moves >= low - 1e-12).all() and (t + moves <= high + 1e-12).all()
    on_plane = np.abs((w * moves).sum(1) + c) < 1e-9
    assert on_plane.sum() >= 30  # the rest cannot reach the hyperplane inside the box
    size = np.abs(moves).max(1) if norm == "linf" else np.linalg.norm(moves, axis=1)
    for row in np.flatnonzero(on_plane):
        assert size[row] == pytest.approx(_smallest_move(t[row], w[row], c[row], low, high, norm), abs=1e-6)
    signed = w * np.sign(c)[:, None]  # out of reach: every weighted coordinate pushed to its bound
    corner = np.where(signed > 0, low, np.where(signed < 0, high, t))
    assert np.allclose((t + moves)[~on_plane], corner[~on_plane])


def test_finds_small_adversarials_with_eps_inf(small_cnn, samples, unbounded):
    x, y = samples
    for norm, x_adv in unbounded.items():
        predictions = predict(small_cnn, x_adv)
        assert (predictions != y).float().mean() > 0.95
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        sizes = perturbation_norm(x_adv - x, norm)
        assert sizes[predictions != y].median() < EPS[norm] * 1.5
        assert torch.equal(x_adv[predictions == y], x[predictions == y])  # nothing found: x itself


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_parity_with_torchattacks(small_cnn, samples, unbounded, norm):
    """Same budget (100 steps, 1 restart): median norm within 5% and robust accuracy within 0.01."""
    x, y = samples
    reference = torchattacks.FAB(small_cnn, norm=REFERENCE_NORM[norm], eps=1e6, steps=100, n_classes=10)
    theirs = reference(x, y)
    their_success = predict(small_cnn, theirs) != y
    their_sizes = perturbation_norm(theirs - x, norm)
    ours = unbounded[norm]
    our_success = predict(small_cnn, ours) != y
    our_sizes = perturbation_norm(ours - x, norm)
    assert our_sizes[our_success].median() <= their_sizes[their_success].median() * 1.05
    eps = EPS[norm]
    at_eps = FAB.configured(norm=norm).run(small_cnn, x, y, eps=eps)
    their_robust = 1.0 - (their_success & (their_sizes <= eps)).float().mean()
    assert (~at_eps.success).float().mean() <= their_robust + 0.01
    assert at_eps.success.float().mean() > 0.3


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_finite_eps_keeps_only_adversarials_within_eps(small_cnn, samples, unbounded, norm):
    x, y = samples
    eps = EPS[norm] / 2
    result = FAB.configured(norm=norm, steps=100).run(small_cnn, x, y, eps=eps)
    sizes = perturbation_norm(result.x_adv - x, norm)
    assert sizes.max() <= eps + TOL
    assert torch.equal(result.success, result.predictions != y)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    # With one restart, the eps-aware run is the minimum-norm run seen at eps.
    minimal = FAB.configured(norm=norm).run(small_cnn, x, y, eps=float("inf"))
    assert torch.equal(minimal.x_adv, unbounded[norm])
    restricted = restrict_to_budget(minimal, x, y, eps, norm)
    assert torch.equal(restricted.success, result.success)


def test_targeted_success_means_prediction_equals_target(small_cnn, samples):
    x, y = samples
    targets = (y + 4) % 10
    for norm in ("linf", "l2"):
        result = FAB.configured(norm=norm, targeted=True, steps=50).run(
            small_cnn, x, y, eps=float("inf"), targets=targets, generator=seeded()
        )
        assert torch.equal(result.success, predict(small_cnn, result.x_adv) == targets)
        assert result.success.float().mean() > 0.9


def test_input_range_minus_one_to_one_scales_the_norms(mlp, held_out):
    """FAB commutes with an affine rescaling of the inputs: in [-1, 1] the norms double."""
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: mlp((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = torch.as_tensor(held_out[0][:60]), torch.as_tensor(held_out[1][:60])
    correct = predict(mlp, x) == y
    x, y = x[correct], y[correct]
    for norm in ("linf", "l2"):
        unit = FAB.configured(norm=norm, steps=30).run(mlp, x, y, eps=float("inf"))
        wide = FAB.configured(norm=norm, steps=30, input_range=(-1.0, 1.0)).run(
            wrapped, 2 * x - 1, y, eps=float("inf")
        )
        assert wide.x_adv.min() >= -1.0 and wide.x_adv.max() <= 1.0
        both = unit.success & wide.success
        assert both.float().mean() > 0.8
        ratio = (
            perturbation_norm(wide.x_adv - (2 * x - 1), norm)[both]
            / perturbation_norm(unit.x_adv - x, norm)[both]
        )
        assert torch.allclose(ratio, torch.full_like(ratio, 2.0), rtol=1e-2)


def test_restarts_are_seeded_and_only_improve(small_cnn, samples):
    x, y = samples[0][:40], samples[1][:40]
    one = FAB.configured(steps=20).run(small_cnn, x, y, eps=float("inf"), generator=seeded(5))
    runs = [
        FAB.configured(steps=20, restarts=3).run(small_cnn, x, y, eps=float("inf"), generator=seeded(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    other = FAB.configured(steps=20, restarts=3).run(small_cnn, x, y, eps=float("inf"), generator=seeded(6))
    assert not torch.equal(runs[0].x_adv, other.x_adv)
    before = perturbation_norm(one.x_adv - x, "linf")[one.success]
    after = perturbation_norm(runs[0].x_adv - x, "linf")[one.success]
    assert (after <= before + 1e-7).all() and (after < before).any()


def test_runner_sees_the_minimum_norm_run_at_each_eps(small_cnn, held_out):
    """evaluate_attack runs FAB once per batch with eps=inf; each eps keeps the successes within it."""
    x, y = torch.as_tensor(held_out[0][:60]), torch.as_tensor(held_out[1][:60])
    with torch.no_grad():
        logits = small_cnn(x)
    clean_correct, batches, eps_values = logits.argmax(1) == y, batch_bounds(len(x), 30), [0.05, 0.1, 0.2]
    attack = FAB.configured(steps=20)
    entry, arrays = evaluate_attack(
        small_cnn, attack, {"eps": eps_values, "targeted": False},
        EvaluationData(x, y, logits, clean_correct, batches), index=0, seed=0,
        device=torch.device("cpu"), progress=ProgressTracker(1.0, None), worst=WorstCase(len(x)),
    )  # fmt: skip
    direct = torch.full((len(x),), torch.inf)
    for start, stop in batches:
        rows = start + clean_correct[start:stop].nonzero()[:, 0]
        result = attack.run(small_cnn, x[rows], y[rows], eps=float("inf"))
        direct[rows] = torch.where(
            result.success, perturbation_norm(result.x_adv - x[rows], "linf"), torch.inf
        )
    for position, eps in enumerate(eps_values):
        assert np.array_equal(arrays["success"][position], (direct <= eps).numpy())
        expected = (clean_correct & ~(direct <= eps)).float().mean().item()
        assert entry["results"][position]["robust_accuracy"] == pytest.approx(expected)
    assert [row["robust_accuracy"] for row in entry["results"]] == sorted(
        (row["robust_accuracy"] for row in entry["results"]), reverse=True
    )


def test_flags_params_and_validation():
    assert FAB.minimum_norm and FAB.requires_gradients
    assert FAB.configured().params()["restart_eps"] == pytest.approx(0.3)
    assert FAB.configured(norm="l2", input_range=(-1.0, 1.0)).params()["restart_eps"] == pytest.approx(2.0)
    assert FAB.configured(restart_eps=0.5).restart_radius(float("inf")) == 0.5
    assert FAB.configured().restart_radius(0.1) == 0.1
    for bad in (
        {"steps": 0},
        {"restarts": 0},
        {"alpha_max": 2.0},
        {"eta": 0.5},
        {"beta": 0.0},
        {"restart_eps": 0},
    ):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            FAB.configured(**bad)
    attack = FAB(FabParams(name="fab", norm="l2", eps=[1.0], targeted=True, target_mode="random", steps=12))
    assert (attack.norm, attack.targeted, attack.steps, attack.alpha_max) == ("l2", True, 12, 0.1)
