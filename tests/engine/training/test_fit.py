"""The shared fit loop: determinism, soft labels, keep-best, early stop, progress, cancellation, schedules."""

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import StopTraining, fit, soft_cross_entropy
from worker.engine.training.recipe import TrainingRecipe

N, FEATURES, CLASSES = 150, 4, 3


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, N)
    centers = rng.normal(scale=3.0, size=(CLASSES, FEATURES))
    x = (centers[y] + rng.normal(size=(N, FEATURES))).astype(np.float32)
    return x, y.astype(np.int64)


def _net(seed: int = 0) -> nn.Module:
    """A small MLP with dropout, initialised from `seed`."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, CLASSES))


def _state(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the model's state."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """Bitwise equality of two states."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy in eval mode."""
    with torch.no_grad():
        return float((model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


RECIPE = TrainingRecipe(epochs=3, batch_size=32, learning_rate=1e-2)


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(blobs) -> None:
    x, y = blobs
    runs = []
    for seed in (5, 5, 6):
        model = _net()
        fit(model, x, y, recipe=RECIPE, seed=seed)
        runs.append(_state(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])  # the shuffle and the dropout masks follow the seed


def test_fit_leaves_the_global_rng_alone_and_ends_in_eval_mode(blobs) -> None:
    x, y = blobs
    model = _net()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    history = fit(model, x, y, recipe=RECIPE, seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert not model.training and all(not m.training for m in model.modules())
    assert [r.epoch for r in history.epochs] == [1, 2, 3]
    assert history.epochs[-1].loss < history.epochs[0].loss
    assert _accuracy(model, x, y) > 0.9


def test_soft_labels(blobs) -> None:
    x, y = blobs
    one_hot = np.eye(CLASSES, dtype=np.float32)[y]
    hard, soft = _net(), _net()
    fit(hard, x, y, recipe=RECIPE, seed=1)
    fit(soft, x, one_hot, recipe=RECIPE, seed=1)
    for name, value in _state(hard).items():  # one-hot targets are the same loss as hard labels
        torch.testing.assert_close(_state(soft)[name], value, rtol=1e-4, atol=1e-5)
    # a genuine distribution is learned as a distribution: the mean prediction approaches it
    target = np.tile(np.array([0.6, 0.3, 0.1], np.float32), (N, 1))
    model = _net()
    fit(model, x, target, recipe=TrainingRecipe(epochs=30, batch_size=50, learning_rate=1e-2), seed=0)
    with torch.no_grad():
        mean = torch.softmax(model(torch.from_numpy(x)), 1).mean(0).numpy()
    np.testing.assert_allclose(mean, target[0], atol=0.03)


def test_soft_cross_entropy_matches_cross_entropy_on_labels() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 1, 2])
    expected = nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(soft_cross_entropy(logits, labels), expected)
    torch.testing.assert_close(soft_cross_entropy(logits, nn.functional.one_hot(labels, 4).float()), expected)


def test_keep_best_restores_the_best_epoch(blobs) -> None:
    x, y = blobs
    scores, snapshots = [0.2, 0.9, 0.4, 0.5], {}

    def on_epoch(epoch: int, model: nn.Module) -> dict[str, float]:
        snapshots[epoch] = _state(model)
        return {"score": scores[epoch - 1]}

    model = _net()
    history = fit(
        model, x, y, recipe=TrainingRecipe(epochs=4, batch_size=32), on_epoch=on_epoch, keep_best="score"
    )
    assert history.best_epoch == 2
    assert _same(_state(model), snapshots[2]) and not _same(snapshots[2], snapshots[4])
    assert [row["score"] for row in history.curve()] == scores


def test_stop_training_ends_early_and_keeps_its_metrics(blobs) -> None:
    x, y = blobs
    seen = []

    def on_epoch(epoch: int, model: nn.Module) -> dict[str, float]:
        seen.append(epoch)
        if epoch == 2:
            raise StopTraining("plateau", metrics={"score": 1.0})
        return {"score": 0.0}

    model = _net()
    history = fit(model, x, y, recipe=TrainingRecipe(epochs=10), on_epoch=on_epoch, keep_best="score")
    assert seen == [1, 2] and len(history.epochs) == 2
    assert history.stopped_early == "plateau"
    assert history.epochs[-1].metrics == {"score": 1.0} and history.best_epoch == 2


def test_progress_advances_per_batch(blobs) -> None:
    x, y = blobs
    calls: list[tuple[float, str]] = []
    recipe = TrainingRecipe(epochs=2, batch_size=40)  # 150 samples: batches of 40, 40, 40, 30
    tracker = ProgressTracker(2 * N * 0.5, lambda fraction, stage: calls.append((fraction, stage)))
    fit(_net(), x, y, recipe=recipe, progress=tracker, units_per_sample=0.5, stage="victim")
    fractions = [fraction for fraction, _ in calls]
    assert len(calls) == 8 and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert fractions[0] == pytest.approx(40 / 300)
    assert calls[5][1] == "victim epoch 2/2 batch 2/4"


class Cancelled(Exception):
    """What a job's progress callback raises when the job is cancelled."""


def test_an_exception_from_the_progress_callback_stops_training_within_a_batch(blobs) -> None:
    x, y = blobs
    steps = []

    def loss(model: nn.Module, xb: Tensor, tb: Tensor, generator: torch.Generator) -> Tensor:
        steps.append(len(xb))
        return soft_cross_entropy(model(xb), tb)

    def callback(fraction: float, stage: str) -> None:
        if len(steps) == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        fit(
            _net(),
            x,
            y,
            recipe=TrainingRecipe(epochs=5, batch_size=10),
            loss=loss,
            progress=ProgressTracker(5 * N, callback),
        )
    assert steps == [10, 10, 10]


def test_a_last_batch_of_one_joins_the_previous_batch(blobs) -> None:
    x, y = blobs
    sizes = []

    def loss(model: nn.Module, xb: Tensor, tb: Tensor, generator: torch.Generator) -> Tensor:
        sizes.append(len(xb))
        return soft_cross_entropy(model(xb), tb)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.Linear(8, CLASSES))
    fit(model, x[:65], y[:65], recipe=TrainingRecipe(epochs=1, batch_size=32), loss=loss)
    assert sizes == [32, 33]


def test_refuses_mismatched_targets_and_frozen_models(blobs) -> None:
    x, y = blobs
    with pytest.raises(ValueError, match="as many targets"):
        fit(_net(), x, y[:-1], recipe=RECIPE)
    frozen = _net().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, x, y, recipe=RECIPE)


def _linear_probe_steps(recipe: TrainingRecipe, n: int) -> tuple[float, float]:
    """Train a single weight on loss = w (gradient 1) with momentum-free SGD: its total descent and the
    sum of the learning rates fit applied, batch by batch."""
    probe = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        probe.weight.fill_(0.0)

    def loss(model: nn.Module, xb: Tensor, tb: Tensor, generator: torch.Generator) -> Tensor:
        return model.weight.sum()

    fit(probe, np.zeros((n, 1), np.float32), np.zeros(n, np.int64), recipe=recipe, loss=loss)
    batches = -(-n // recipe.batch_size)
    expected = sum(
        recipe.learning_rate_at(epoch, number / batches)
        for epoch in range(recipe.epochs)
        for number in range(batches)
    )
    return -float(probe.weight.detach()), expected


@pytest.mark.parametrize(
    "recipe",
    [
        TrainingRecipe(epochs=3, batch_size=5, optimizer="sgd", momentum=0.0, learning_rate=0.1),
        TrainingRecipe(
            epochs=4, batch_size=5, optimizer="sgd", momentum=0.0, learning_rate=0.1, schedule="cosine"
        ),
        TrainingRecipe(
            epochs=5,
            batch_size=5,
            optimizer="sgd",
            momentum=0.0,
            learning_rate=0.1,
            schedule="step",
            step_epochs=2,
        ),
        TrainingRecipe(
            epochs=5, batch_size=5, optimizer="sgd", momentum=0.0, learning_rate=0.1, schedule="cyclic"
        ),
    ],
    ids=["constant", "cosine", "step", "cyclic"],
)
def test_fit_applies_the_schedule_batch_by_batch(recipe: TrainingRecipe) -> None:
    descent, expected = _linear_probe_steps(recipe, 20)
    assert descent == pytest.approx(expected, rel=1e-5)


def test_schedules() -> None:
    cosine = TrainingRecipe(epochs=10, learning_rate=0.2, schedule="cosine")
    assert cosine.learning_rate_at(0) == pytest.approx(0.2)
    assert cosine.learning_rate_at(5) == pytest.approx(0.1)
    assert cosine.learning_rate_at(2, 0.5) == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.25)))
    assert cosine.learning_rate_at(10) == pytest.approx(0.0, abs=1e-9)
    step = TrainingRecipe(epochs=10, learning_rate=0.2, schedule="step", step_epochs=3, gamma=0.5)
    assert [step.learning_rate_at(e) for e in (0, 2, 3, 5, 6, 9)] == pytest.approx(
        [0.2, 0.2, 0.1, 0.1, 0.05, 0.025]
    )
    assert TrainingRecipe(learning_rate=0.3).learning_rate_at(7, 0.9) == 0.3
    cyclic = TrainingRecipe(epochs=10, learning_rate=0.2, schedule="cyclic")
    assert [cyclic.learning_rate_at(e) for e in (0, 2, 4, 7, 10)] == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0])
    assert cyclic.learning_rate_at(1, 0.5) == pytest.approx(0.075)


def test_sgd_recipe_builds_sgd_with_momentum_and_trains(blobs) -> None:
    x, y = blobs
    recipe = TrainingRecipe(
        epochs=5, batch_size=16, optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True
    )
    optimizer = recipe.build_optimizer(list(_net().parameters()))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"]
    model = _net()
    fit(model, x, y, recipe=recipe, seed=0)
    assert _accuracy(model, x, y) > 0.9


def test_recipe_from_spec_refuses_unknown_keys_and_bad_values() -> None:
    recipe = TrainingRecipe.from_spec({"epochs": 2, "learning_rate": None, "optimizer": "sgd"})
    assert recipe.epochs == 2 and recipe.learning_rate == 1e-3 and recipe.optimizer == "sgd"
    with pytest.raises(ValueError, match="unknown training parameters: lr"):
        TrainingRecipe.from_spec({"lr": 0.1})
    for bad in ({"batch_size": 0}, {"learning_rate": 0.0}, {"momentum": 1.0}, {"schedule": "linear"}):
        with pytest.raises(ValueError):
            TrainingRecipe(**bad)
