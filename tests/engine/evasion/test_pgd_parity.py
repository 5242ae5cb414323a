"""PGD is at least as strong as the reference libraries' PGD at the same eps and budget."""

import numpy as np
import pytest
import torch

from worker.engine.evasion.runner import run_evasion

art = pytest.importorskip("art")
torchattacks = pytest.importorskip("torchattacks")
from art.attacks.evasion import ProjectedGradientDescentPyTorch  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402

SAMPLES = 200
STEPS = 20
TOLERANCE = 0.01


def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.as_tensor(x)).argmax(1).numpy() == y).mean())


def _ours(model, x, y, norm: str, eps: float, random_start: bool, seed: int) -> float:
    spec = {
        "name": "pgd",
        "norm": norm,
        "eps": [eps],
        "targeted": False,
        "steps": STEPS,
        "step_size": 2.5 * eps / STEPS,
        "random_start": random_start,
        "restarts": 1,
    }
    report = run_evasion(model, x, y, [spec], seed=seed, sanity_runs=False).report
    return report["attacks"][0]["results"][0]["robust_accuracy"]


def _art(model, x, y, norm: str, eps: float, random_start: bool, seed: int) -> float:
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=x.shape[1:],
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    attack = ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf if norm == "linf" else 2,
        eps=eps,
        eps_step=2.5 * eps / STEPS,
        max_iter=STEPS,
        num_random_init=int(random_start),
        batch_size=SAMPLES,
        verbose=False,
    )
    torch.manual_seed(seed)
    np.random.seed(seed)
    return _accuracy(model, attack.generate(x=x, y=y).astype(np.float32), y)


def _torchattacks(model, x, y, norm: str, eps: float, random_start: bool, seed: int) -> float:
    torch.manual_seed(seed)
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    attack = cls(model, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS, random_start=random_start)
    adv = attack(torch.as_tensor(x), torch.as_tensor(y))
    return _accuracy(model, adv.numpy(), y)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.75)])
def test_pgd_from_the_clean_point_is_no_weaker_than_the_references(small_cnn, held_out, norm, eps):
    x, y = held_out[0][:SAMPLES], held_out[1][:SAMPLES]
    ours = _ours(small_cnn, x, y, norm, eps, random_start=False, seed=0)
    clean = _accuracy(small_cnn, x, y)
    assert ours < clean - 0.15, (ours, clean)
    for reference in (_art, _torchattacks):
        theirs = reference(small_cnn, x, y, norm, eps, random_start=False, seed=0)
        assert ours <= theirs + TOLERANCE, (reference.__name__, ours, theirs)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.75)])
def test_pgd_with_random_start_is_no_weaker_than_the_references_on_average(small_cnn, held_out, norm, eps):
    """A single random start moves robust accuracy by a few points, so compare means over seeds."""
    x, y = held_out[0][:SAMPLES], held_out[1][:SAMPLES]
    seeds = range(4)
    ours = np.mean([_ours(small_cnn, x, y, norm, eps, random_start=True, seed=s) for s in seeds])
    for reference in (_art, _torchattacks):
        theirs = np.mean([reference(small_cnn, x, y, norm, eps, random_start=True, seed=s) for s in seeds])
        assert ours <= theirs + TOLERANCE, (reference.__name__, ours, theirs)
