"""The surrogate recipe: a floor of optimizer steps at small budgets, and what it buys from an OOD pool.

The victim is a BatchNorm CNN trained on digits, exported to ONNX and queried through onnxruntime; the
attacker holds natural-image patches (another distribution) and a catalog small-cnn. Queries go through
the counted query layer; fidelity is measured on held-out digits.
"""

import numpy as np
import pytest
import torch

from app.schemas.extraction import SurrogateParams, VictimOutputParams
from tests.engine.extraction_helpers import SHAPE, CountingVictim, agreement, attack_spec, catalog_factory
from tests.engine.onnx_fixtures import export_onnx
from worker.engine.datasets import load_builtin
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies import StrategyContext, build_strategy
from worker.engine.extraction.surrogate import (
    SurrogateTrainer,
    epochs_for,
    steps_per_epoch,
    surrogate_recipe,
)
from worker.engine.training.classifier import train_digits_model
from worker.engine.training.fit import _batch_bounds
from worker.engine.training.recipe import TrainingRecipe

BUDGET = 250
# Kept small for speed: 10 epochs of 4 steps (the old recipe's problem, shrunk) against a floor of 400 steps.
SHORT = {"architecture": "small-cnn", "epochs": 10}


small_cnn = catalog_factory("small-cnn")  # the attacker's catalog small-cnn


@pytest.fixture(scope="module")
def bn_victim() -> CountingVictim:
    """A BatchNorm CNN trained on digits, behind onnxruntime."""
    return CountingVictim(export_onnx(train_digits_model("bn-cnn", epochs=5, seed=0), SHAPE))


def test_steps_per_epoch_counts_the_fit_loops_batches():
    for n in range(1, 200):
        for batch_size in (1, 2, 7, 64):
            assert steps_per_epoch(n, batch_size) == len(_batch_bounds(n, batch_size)), (n, batch_size)


def test_small_budgets_train_for_at_least_min_steps_and_large_ones_for_the_epochs():
    recipe = surrogate_recipe(SurrogateParams())
    floor = SurrogateParams().min_steps
    assert (recipe.epochs, recipe.batch_size, recipe.learning_rate, floor) == (30, 64, 1e-3, 2000)
    assert epochs_for(1000, recipe, floor) == 125  # 16 steps an epoch: 2000 steps, not 480
    assert epochs_for(100, recipe, floor) * steps_per_epoch(100, 64) >= floor
    assert epochs_for(10_000, recipe, floor) == 30  # 157 steps an epoch: the epochs bind
    assert epochs_for(1000, recipe, 0) == 30


def steal(victim: CountingVictim, pool: np.ndarray, spec: dict) -> tuple[torch.nn.Module, int]:
    """Knockoff random through a counted interface, the measured surrogate trained with the floor."""
    before = victim.samples
    api = QueryInterface(
        victim,
        num_classes=10,
        input_shape=SHAPE,
        input_range=(0.0, 1.0),
        output=VictimOutputParams(),
        defense=None,
        budget=BUDGET,
        seed=0,
    )
    surrogate = SurrogateParams.model_validate(spec)
    trainer = SurrogateTrainer(
        small_cnn, surrogate_recipe(surrogate), torch.device("cpu"), min_steps=surrogate.min_steps
    )
    build_strategy(attack_spec({"name": "knockoff", "strategy": "random"})).run(
        api, pool, StrategyContext(trainer, 0, torch.device("cpu"), (0.0, 1.0))
    )
    log = api.log()
    surrogate = trainer.train(log.x, log.outputs, seed=1, stage="test", measured=True)
    return surrogate, victim.samples - before


@pytest.mark.slow
def test_the_step_floor_lifts_fidelity_from_an_ood_pool_against_a_bn_victim(bn_victim, held_out):
    pool = load_builtin("natural-patches").x
    x_eval = held_out[0]
    labels = bn_victim.classifier(x_eval).argmax(1)
    old, old_queries = steal(bn_victim, pool, SHORT | {"min_steps": 0})  # 40 steps (measured: 0.17)
    new, new_queries = steal(bn_victim, pool, SHORT | {"min_steps": 400})  # (measured: 0.66)
    assert old_queries == new_queries == BUDGET  # the floor costs no query
    old_fidelity, new_fidelity = agreement(old, x_eval, labels), agreement(new, x_eval, labels)
    assert new_fidelity > old_fidelity + 0.25, (old_fidelity, new_fidelity)
    assert new_fidelity > 0.5, new_fidelity


def test_an_explicit_epoch_count_without_floor_is_kept():
    trainer = SurrogateTrainer(small_cnn, TrainingRecipe(epochs=2, batch_size=64), torch.device("cpu"))
    seen: list[int] = []

    class Count:
        def advance(self, units: float, stage: str) -> None:
            seen.append(int(units))

    trainer.progress = Count()  # type: ignore[assignment]
    x = np.random.default_rng(0).random((100, *SHAPE), dtype=np.float32)
    trainer.train(x, np.zeros(100, dtype=np.int64), seed=0, stage="t", measured=True)
    assert sum(seen) == 2 * 100
    trainer.min_steps = 20
    seen.clear()
    trainer.train(x, np.zeros(100, dtype=np.int64), seed=0, stage="t", measured=True)
    assert sum(seen) == 10 * 100  # 2 steps an epoch: 10 epochs for 20 steps
    seen.clear()
    trainer.train(x, np.zeros(100, dtype=np.int64), seed=0, stage="t")  # a strategy's own surrogate
    assert sum(seen) == 2 * 100
