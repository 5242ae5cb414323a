"""Carlini-Wagner L2: minimum-norm semantics, threat model, runner agreement, ART/torchattacks parity."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import CarliniWagnerParams
from tests.engine.attack_helpers import clean_correct, outcome, predict, robust_within, seeded
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.base import restrict_to_budget
from worker.engine.evasion.attacks.carlini_wagner import CarliniWagnerL2
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.progress import ProgressTracker

TOL = 1e-5
EPS = (0.5, 1.0)
# Reduced budget for test speed, identical for every implementation: 3 binary-search steps x 100 iterations,
# learning rate 0.05, initial constant 1 (torchattacks has no binary search: c = 1 for all 300 iterations).
PARITY = {"binary_search_steps": 3, "steps": 100, "learning_rate": 0.05, "initial_const": 1.0}
# ART's C&W (line search, ~20 backward passes per iteration) is about 50x slower per sample: a subset.
ART_SAMPLES = 48
FAST = {"binary_search_steps": 2, "steps": 50, "learning_rate": 0.1, "initial_const": 1.0}


@pytest.fixture(scope="module")
def parity(small_cnn, held_out) -> dict[str, tuple]:
    """Ours, ART's CarliniL2Method and torchattacks' CW at the same reduced budget."""
    art_classifiers = pytest.importorskip("art.estimators.classification")
    art_evasion = pytest.importorskip("art.attacks.evasion")
    torchattacks = pytest.importorskip("torchattacks")
    x, y = clean_correct(small_cnn, held_out, 150)
    ours = CarliniWagnerL2.configured(**PARITY).run(small_cnn, x, y, eps=math.inf)
    classifier = art_classifiers.PyTorchClassifier(
        model=small_cnn,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    art_attack = art_evasion.CarliniL2Method(
        classifier,
        confidence=0.0,
        binary_search_steps=PARITY["binary_search_steps"],
        max_iter=PARITY["steps"],
        learning_rate=PARITY["learning_rate"],
        initial_const=PARITY["initial_const"],
        batch_size=ART_SAMPLES,
        verbose=False,
    )
    x_art, y_art = x[:ART_SAMPLES], y[:ART_SAMPLES]
    art_adv = torch.as_tensor(art_attack.generate(x_art.numpy(), y_art.numpy()))
    ta_attack = torchattacks.CW(
        small_cnn,
        c=PARITY["initial_const"],
        kappa=0,
        steps=PARITY["binary_search_steps"] * PARITY["steps"],
        lr=PARITY["learning_rate"],
    )
    return {
        "ours": outcome(small_cnn, x, y, ours.x_adv),
        "art": outcome(small_cnn, x_art, y_art, art_adv),
        "torchattacks": outcome(small_cnn, x, y, ta_attack(x, y)),
    }


@pytest.mark.parametrize("reference", ["art", "torchattacks"])
def test_strength_parity_with_reference_libraries(parity, reference):
    """Robust accuracy at each eps within +0.01 of the reference; median l2 of common successes within 5%."""
    success, sizes = parity["ours"]
    ref_success, ref_sizes = parity[reference]
    n = len(ref_success)
    success, sizes = success[:n], sizes[:n]
    for eps in EPS:
        assert robust_within(success, sizes, eps) <= robust_within(ref_success, ref_sizes, eps) + 0.01, eps
    assert success.float().mean() >= ref_success.float().mean() - 0.01
    both = success & ref_success
    assert both.sum() >= 0.5 * n
    assert sizes[both].median() <= 1.05 * ref_sizes[both].median()


@pytest.mark.parametrize("targeted", [False, True])
def test_minimum_norm_semantics(small_cnn, held_out, targeted):
    """Every success is adversarial (or hits its target), failures come back unchanged, all stays in range."""
    x, y = torch.as_tensor(held_out[0][:64]), torch.as_tensor(held_out[1][:64])
    targets = (y + 3) % 10 if targeted else None
    result = CarliniWagnerL2.configured(targeted=targeted, **FAST).run(
        small_cnn, x, y, eps=math.inf, targets=targets
    )
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predictions = predict(small_cnn, result.x_adv)
    assert torch.equal(result.predictions, predictions)
    assert torch.equal(result.success, predictions == targets if targeted else predictions != y)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert result.success.float().mean() > (0.8 if targeted else 0.95)
    sizes = perturbation_norm(result.x_adv - x, "l2")
    assert sizes[result.success].median() < 1.5
    if not targeted:
        clean = (predict(small_cnn, x) == y).float().mean().item()
        robust = (restrict_to_budget(result, x, y, 1.0, "l2").predictions == y).float().mean().item()
        assert clean > 0.9 and robust < clean - 0.4


def test_finite_eps_equals_restricting_the_unbounded_run(small_cnn, held_out):
    """With a finite eps, x_adv stays in the ball and equals the eps=inf run restricted to eps."""
    x, y = clean_correct(small_cnn, held_out, 64)
    attack = CarliniWagnerL2.configured(**FAST)
    bounded = attack.run(small_cnn, x, y, eps=EPS[1])
    restricted = restrict_to_budget(attack.run(small_cnn, x, y, eps=math.inf), x, y, EPS[1], "l2")
    assert perturbation_norm(bounded.x_adv - x, "l2").max() <= EPS[1] + TOL
    assert torch.equal(bounded.success, restricted.success)
    assert torch.allclose(bounded.x_adv, restricted.x_adv, atol=1e-6)  # run re-projects (ulps apart)
    assert 0 < bounded.success.sum() < len(x)


def test_runner_counts_what_restrict_to_budget_counts(small_cnn, held_out):
    """evaluate_attack (one eps=inf run per batch) gives the robust accuracy of restricting direct runs."""
    x, y = torch.as_tensor(held_out[0][:80]), torch.as_tensor(held_out[1][:80])
    with torch.no_grad():
        logits = small_cnn(x)
    clean_correct = logits.argmax(1) == y
    batches = batch_bounds(len(x), 40)
    attack = CarliniWagnerL2.configured(**FAST)
    entry, arrays = evaluate_attack(
        small_cnn,
        attack,
        {"eps": list(EPS), "targeted": False},
        EvaluationData(x, y, logits, clean_correct, batches),
        index=0,
        seed=0,
        device=torch.device("cpu"),
        progress=ProgressTracker(1.0, None),
        worst=WorstCase(len(x)),
    )
    direct = []
    for start, stop in batches:
        rows = start + torch.nonzero(clean_correct[start:stop])[:, 0]
        direct.append((rows, attack.run(small_cnn, x[rows], y[rows], eps=math.inf)))
    for position, eps in enumerate(EPS):
        success = np.zeros(len(x), dtype=bool)
        for rows, result in direct:
            success[rows.numpy()] = restrict_to_budget(result, x[rows], y[rows], eps, "l2").success.numpy()
        assert np.array_equal(arrays["success"][position], success)
        expected = (clean_correct.numpy() & ~success).mean()
        assert entry["results"][position]["robust_accuracy"] == pytest.approx(expected)


def test_confidence_gives_the_requested_logit_margin(small_cnn, held_out):
    x, y = clean_correct(small_cnn, held_out, 32)
    result = CarliniWagnerL2.configured(confidence=2.0, **FAST).run(small_cnn, x, y, eps=math.inf)
    with torch.no_grad():
        logits = small_cnn(result.x_adv[result.success])
    labels = y[result.success]
    true_logit = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    assert result.success.float().mean() > 0.8
    assert (other - true_logit).min() >= 2.0 - 1e-3


def test_more_binary_search_steps_never_hurt(small_cnn, held_out):
    """The search is a prefix of a longer one, and the best adversarial over all steps is kept."""
    x, y = clean_correct(small_cnn, held_out, 48)
    budget = {**FAST, "binary_search_steps": 2}
    short = CarliniWagnerL2.configured(**budget).run(small_cnn, x, y, eps=math.inf)
    long = CarliniWagnerL2.configured(**{**budget, "binary_search_steps": 4}).run(
        small_cnn, x, y, eps=math.inf
    )
    assert not (short.success & ~long.success).any()
    both = short.success & long.success
    short_sizes = perturbation_norm(short.x_adv - x, "l2")[both]
    long_sizes = perturbation_norm(long.x_adv - x, "l2")[both]
    assert (long_sizes <= short_sizes + 1e-6).all() and (long_sizes < short_sizes - 1e-3).any()


def test_custom_input_range_is_respected(mlp, held_out):
    """A model taking inputs in [-1, 1]: the tanh change of variables maps onto that range."""
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: mlp((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = clean_correct(mlp, held_out, 48)
    x = x * 2.0 - 1.0
    attack = CarliniWagnerL2.configured(input_range=(-1.0, 1.0), **FAST)
    result = attack.run(wrapped, x, y, eps=math.inf)
    assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
    assert result.x_adv.min() < -0.99 and result.x_adv.max() > 0.99  # the whole range is used, not [0, 1]
    assert result.success.float().mean() > 0.9
    bounded = attack.run(wrapped, x, y, eps=2.0)
    assert perturbation_norm(bounded.x_adv - x, "l2").max() <= 2.0 + TOL
    assert bounded.x_adv.min() >= -1.0 and bounded.x_adv.max() <= 1.0


def test_deterministic_and_parameters_untouched(small_cnn, held_out):
    x, y = clean_correct(small_cnn, held_out, 32)
    params = list(small_cnn.parameters())
    before = [None if p.grad is None else p.grad.clone() for p in params]
    first = CarliniWagnerL2.configured(**FAST).run(small_cnn, x, y, eps=math.inf, generator=seeded(1))
    second = CarliniWagnerL2.configured(**FAST).run(small_cnn, x, y, eps=math.inf, generator=seeded(2))
    assert torch.equal(first.x_adv, second.x_adv) and first.success.any()
    for param, grad in zip(params, before, strict=True):
        assert (param.grad is None and grad is None) or torch.equal(param.grad, grad)


def test_invalid_settings_are_refused(small_cnn, held_out):
    x, y = torch.as_tensor(held_out[0][:4]), torch.as_tensor(held_out[1][:4])
    with pytest.raises(ValidationError, match="l2"):
        CarliniWagnerL2.configured(norm="linf")
    bad_settings = (
        {"binary_search_steps": 0},
        {"steps": 0},
        {"learning_rate": 0.0},
        {"initial_const": -1.0},
        {"confidence": -0.5},
    )
    for bad in bad_settings:
        with pytest.raises(ValidationError, match=next(iter(bad))):
            CarliniWagnerL2.configured(**bad)
    with pytest.raises(ValueError, match="targets"):
        CarliniWagnerL2.configured(targeted=True).run(small_cnn, x, y, eps=math.inf)


def test_spec_params_and_passes():
    spec = {
        "name": "cw",
        "norm": "l2",
        "eps": [0.5],
        "targeted": True,
        "target_mode": "random",
        "steps": 200,
    }
    attack = CarliniWagnerL2(
        CarliniWagnerParams.model_validate({**spec, "binary_search_steps": 4}), input_range=(-1.0, 1.0)
    )
    assert (attack.binary_search_steps, attack.steps, attack.confidence, attack.targeted) == (
        4,
        200,
        0.0,
        True,
    )
    assert attack.input_range == (-1.0, 1.0) and attack.minimum_norm and attack.requires_gradients
    typed = CarliniWagnerParams.model_validate({**spec, "binary_search_steps": 4, "confidence": 0.0})
    assert typed.passes_per_sample() == 4 * 200
    params = attack.params()
    assert (
        params["learning_rate"] == 0.01 and params["initial_const"] == 0.001 and params["abort_early"] is True
    )
    default = CarliniWagnerL2.configured()
    assert (default.binary_search_steps, default.steps, default.learning_rate) == (9, 10000, 0.01)
    assert (default.initial_const, default.confidence, default.abort_early, default.norm) == (
        0.001,
        0.0,
        True,
        "l2",
    )
