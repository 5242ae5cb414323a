"""DeepFool: minimum-norm semantics, threat model, runner agreement, ART/torchattacks parity."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from app.schemas.evasion import DeepFoolParams
from tests.engine.attack_helpers import clean_correct, outcome, predict, robust_within, seeded
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.base import restrict_to_budget
from worker.engine.evasion.attacks.deepfool import DeepFool
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.progress import ProgressTracker

TOL = 1e-5
L2_EPS = (0.5, 1.0)
LINF_EPS = (0.1, 0.2)


@pytest.fixture(scope="module")
def parity(small_cnn, held_out) -> dict[str, tuple]:
    """DeepFool l2 at the published budget (50 steps, overshoot 0.02, 10 classes) from all three."""
    art_classifiers = pytest.importorskip("art.estimators.classification")
    art_evasion = pytest.importorskip("art.attacks.evasion")
    torchattacks = pytest.importorskip("torchattacks")
    x, y = clean_correct(small_cnn, held_out, 150)
    ours = DeepFool.configured(norm="l2").run(small_cnn, x, y, eps=math.inf, generator=seeded())
    classifier = art_classifiers.PyTorchClassifier(
        model=small_cnn,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    art_attack = art_evasion.DeepFool(
        classifier, max_iter=50, epsilon=0.02, nb_grads=10, batch_size=len(x), verbose=False
    )
    art_adv = torch.as_tensor(art_attack.generate(x.numpy()))
    ta_adv = torchattacks.DeepFool(small_cnn, steps=50, overshoot=0.02)(x, y)
    return {
        "ours": outcome(small_cnn, x, y, ours.x_adv),
        "art": outcome(small_cnn, x, y, art_adv),
        "torchattacks": outcome(small_cnn, x, y, ta_adv),
    }


@pytest.mark.parametrize("reference", ["art", "torchattacks"])
def test_strength_parity_with_reference_libraries(parity, reference):
    """Robust accuracy at each eps within +0.01 of the reference; median of common successes within 5%."""
    success, sizes = parity["ours"]
    ref_success, ref_sizes = parity[reference]
    n = len(ref_success)
    for eps in L2_EPS:
        assert robust_within(success, sizes, eps) <= robust_within(ref_success, ref_sizes, eps) + 0.01, eps
    assert success.float().mean() >= ref_success.float().mean() - 0.01
    both = success & ref_success
    assert both.sum() >= 0.5 * n
    assert sizes[both].median() <= 1.05 * ref_sizes[both].median()


def _plain_deepfool_linf(model: nn.Module, image: torch.Tensor, label: int) -> torch.Tensor | None:
    """The authors' loop for p = inf, one sample, full Jacobian, clamped to [0, 1]; None when it fails."""
    with torch.no_grad():
        order = model(image[None])[0].argsort(descending=True)
    assert order[0] == label
    current = image.clone()
    for step in range(51):
        current.requires_grad_(True)
        logits = model(current[None])[0]
        if logits.argmax() != label:
            return current.detach()
        if step == 50:
            return None
        grads = [torch.autograd.grad(logits[c], current, retain_graph=True)[0] for c in order]
        best, direction = math.inf, torch.zeros_like(image)
        for k in range(1, 10):
            w_k = grads[k] - grads[0]
            distance = abs((logits[order[k]] - logits[order[0]]).item()) / w_k.abs().sum().item()
            if distance < best:
                best, direction = distance, w_k.sign()
        current = (current.detach() + 1.02 * (best + 1e-4) * direction).clamp(0.0, 1.0)
    return None


def test_linf_matches_the_plain_per_sample_algorithm(small_cnn, held_out):
    """No library has linf DeepFool: compare against the algorithm written out one sample at a time."""
    x, y = clean_correct(small_cnn, held_out, 16)
    ours = DeepFool.configured(norm="linf").run(small_cnn, x, y, eps=math.inf)
    for i in range(len(x)):
        plain = _plain_deepfool_linf(small_cnn, x[i], int(y[i]))
        assert bool(ours.success[i]) == (plain is not None)
        if plain is not None:
            torch.testing.assert_close(ours.x_adv[i], plain, atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_minimum_norm_semantics(small_cnn, held_out, norm):
    """Every success is adversarial, failures come back unchanged, everything stays in range."""
    x, y = torch.as_tensor(held_out[0][:128]), torch.as_tensor(held_out[1][:128])
    result = DeepFool.configured(norm=norm).run(small_cnn, x, y, eps=math.inf, generator=seeded())
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    predictions = predict(small_cnn, result.x_adv)
    assert torch.equal(result.predictions, predictions)
    assert torch.equal(result.success, predictions != y)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert result.success.float().mean() > 0.95
    clean_wrong = predict(small_cnn, x) != y
    assert torch.equal(result.x_adv[clean_wrong], x[clean_wrong])  # already misclassified: nothing to do
    sizes = perturbation_norm(result.x_adv - x, norm)
    eps_values = L2_EPS if norm == "l2" else LINF_EPS
    robust = [(predict(small_cnn, x) == y).float().mean().item()]
    robust += [
        (restrict_to_budget(result, x, y, eps, norm).predictions == y).float().mean().item()
        for eps in eps_values
    ]
    assert robust[0] > 0.9 and robust[1] < robust[0] - 0.2 and robust[2] < robust[1] and robust[2] < 0.3
    assert (result.predictions == y).float().mean() < 0.05  # unbounded: nearly everything is broken
    assert sizes[result.success].max() > 0


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_finite_eps_equals_restricting_the_unbounded_run(small_cnn, held_out, norm):
    """With a finite eps, x_adv stays in the ball and equals the eps=inf run restricted to eps."""
    x, y = clean_correct(small_cnn, held_out, 96)
    eps = L2_EPS[0] if norm == "l2" else LINF_EPS[0]
    attack = DeepFool.configured(norm=norm)
    bounded = attack.run(small_cnn, x, y, eps=eps, generator=seeded())
    restricted = restrict_to_budget(
        attack.run(small_cnn, x, y, eps=math.inf, generator=seeded()), x, y, eps, norm
    )
    assert perturbation_norm(bounded.x_adv - x, norm).max() <= eps + TOL
    assert torch.equal(bounded.success, restricted.success)
    assert torch.allclose(bounded.x_adv, restricted.x_adv, atol=1e-6)  # run re-projects (ulps apart)
    assert 0 < bounded.success.sum() < len(x)


def test_runner_counts_what_restrict_to_budget_counts(small_cnn, held_out):
    """evaluate_attack (one eps=inf run per batch) gives the robust accuracy of restricting a direct run."""
    x, y = torch.as_tensor(held_out[0][:120]), torch.as_tensor(held_out[1][:120])
    with torch.no_grad():
        logits = small_cnn(x)
    clean_correct = logits.argmax(1) == y
    data = EvaluationData(x, y, logits, clean_correct, batch_bounds(len(x), 50))
    attack = DeepFool.configured(norm="l2")
    entry, arrays = evaluate_attack(
        small_cnn,
        attack,
        {"eps": list(L2_EPS), "targeted": False},
        data,
        index=0,
        seed=0,
        device=torch.device("cpu"),
        progress=ProgressTracker(1.0, None),
        worst=WorstCase(len(x)),
    )
    rows = torch.nonzero(clean_correct)[:, 0]
    direct = attack.run(small_cnn, x[rows], y[rows], eps=math.inf, generator=seeded())
    for position, eps in enumerate(L2_EPS):
        seen = restrict_to_budget(direct, x[rows], y[rows], eps, "l2")
        expected = seen.success.logical_not().sum().item() / len(x)
        assert entry["results"][position]["robust_accuracy"] == pytest.approx(expected, abs=1.5 / len(x))
        assert np.array_equal(arrays["success"][position][rows.numpy()], seen.success.numpy())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_custom_input_range_is_respected(mlp, held_out, norm):
    """A model taking inputs in [-1, 1]: iterates stay in that range and still fool the model."""
    wrapped = nn.Sequential(nn.Identity())
    wrapped.forward = lambda z: mlp((z + 1.0) / 2.0)  # type: ignore[method-assign]
    x, y = clean_correct(mlp, held_out, 64)
    x = x * 2.0 - 1.0
    result = DeepFool.configured(norm=norm, input_range=(-1.0, 1.0)).run(
        wrapped, x, y, eps=math.inf, generator=seeded()
    )
    assert result.x_adv.min() >= -1.0 and result.x_adv.max() <= 1.0
    assert result.success.float().mean() > 0.9
    assert torch.equal(result.success, predict(wrapped, result.x_adv) != y)


def test_deterministic_and_independent_of_batch_composition(small_cnn, held_out):
    x, y = clean_correct(small_cnn, held_out, 64)
    attack = DeepFool.configured(norm="l2")
    first = attack.run(small_cnn, x, y, eps=math.inf, generator=seeded(1))
    second = attack.run(small_cnn, x, y, eps=math.inf, generator=seeded(2))
    assert torch.equal(first.x_adv, second.x_adv)
    halves = [attack.run(small_cnn, x[s], y[s], eps=math.inf).x_adv for s in (slice(0, 20), slice(20, None))]
    torch.testing.assert_close(torch.cat(halves), first.x_adv, atol=1e-4, rtol=0)


def test_gap_gradients_match_the_jacobian(small_cnn, held_out):
    """One backward per candidate gives exactly the Jacobian rows of the logit gaps."""
    x = torch.as_tensor(held_out[0][:4]).requires_grad_(True)
    logits = small_cnn(x)
    classes = torch.tensor([[0, 3, 5], [1, 2, 9], [4, 0, 7], [8, 6, 1]])
    gaps = logits.gather(1, classes[:, 1:]) - logits.gather(1, classes[:, :1])
    rows = DeepFool._gap_gradients(gaps, x)
    jacobian = torch.autograd.functional.jacobian(lambda z: small_cnn(z), x.detach())  # [4, 10, 4, 1, 8, 8]
    for i in range(4):
        for k in range(2):
            expected = jacobian[i, classes[i, k + 1], i] - jacobian[i, classes[i, 0], i]
            torch.testing.assert_close(rows[i, k], expected, atol=1e-5, rtol=1e-4)


def test_fewer_candidates_still_fool_and_parameters_are_untouched(small_cnn, held_out):
    x, y = clean_correct(small_cnn, held_out, 48)
    params = list(small_cnn.parameters())
    before = [None if p.grad is None else p.grad.clone() for p in params]
    two = DeepFool.configured(candidates=2).run(small_cnn, x, y, eps=math.inf)
    capped = DeepFool.configured(candidates=50).run(small_cnn, x, y, eps=math.inf)
    assert two.success.float().mean() > 0.8 and capped.success.float().mean() > 0.95
    for param, grad in zip(params, before, strict=True):
        assert (param.grad is None and grad is None) or torch.equal(param.grad, grad)


def test_invalid_settings_are_refused(small_cnn, held_out):
    x, y = torch.as_tensor(held_out[0][:4]), torch.as_tensor(held_out[1][:4])
    with pytest.raises(ValidationError, match="untargeted"):
        DeepFool.configured(targeted=True)
    for bad in ({"steps": 0}, {"overshoot": -0.1}, {"candidates": 1}, {"norm": "l1"}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            DeepFool.configured(**bad)
    with pytest.raises(ValueError):
        DeepFool.configured().run(small_cnn, x, y, eps=math.nan)


def test_spec_params_and_passes():
    attack = DeepFool(
        DeepFoolParams(name="deepfool", norm="linf", eps=[0.1], steps=20, candidates=4),
        input_range=(-1.0, 1.0),
    )
    assert (attack.norm, attack.steps, attack.overshoot, attack.candidates) == ("linf", 20, 0.02, 4)
    assert attack.input_range == (-1.0, 1.0) and attack.minimum_norm and attack.requires_gradients
    typed = DeepFoolParams(name="deepfool", norm="linf", eps=[0.1], steps=20, candidates=4)
    assert typed.passes_per_sample() == 20 * 4
    assert attack.params() == {
        "norm": "linf",
        "targeted": False,
        "input_range": [-1.0, 1.0],
        "steps": 20,
        "overshoot": 0.02,
        "candidates": 4,
    }
    default = DeepFool.configured()
    assert (default.norm, default.steps, default.overshoot, default.candidates) == ("l2", 50, 0.02, 10)
