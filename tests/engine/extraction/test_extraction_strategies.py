"""Each extraction attack steals a tiny victim well above chance and never exceeds its budget.

Queries are counted below the query layer (by the victim itself), not by the attack.
"""

import numpy as np
import pytest

from app.schemas.extraction import VictimOutputParams
from tests.engine.extraction_helpers import (
    SHAPE,
    CountingVictim,
    agreement,
    attack_spec,
    context,
    victim_graph_factory,
)
from worker.engine.datasets import load_builtin
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies import build_strategy

BUDGET = 300
SPECS = [
    {"name": "knockoff", "strategy": "random"},
    {"name": "knockoff", "strategy": "adaptive", "reward": "all"},
    {"name": "knockoff", "strategy": "adaptive", "reward": "cert", "batch_size": 25},
    {"name": "jacobian", "seed_size": 50, "rounds": 3, "lambda": 0.1},
    {"name": "active", "selection": "uncertainty", "rounds": 2},
    {"name": "active", "selection": "kcenter", "rounds": 2},
]


@pytest.fixture(scope="module")
def pool():
    return load_builtin("digits-train").x


def steal(onnx, pool, spec, output=VictimOutputParams(), budget=BUDGET):
    """Run one attack through a counted interface; return the victim counter, interface and surrogate."""
    victim = CountingVictim(onnx)
    api = QueryInterface(
        victim,
        num_classes=10,
        input_shape=SHAPE,
        input_range=(0.0, 1.0),
        output=output,
        defense=None,
        budget=budget,
        seed=0,
    )
    ctx = context(victim_graph_factory(onnx), epochs=15)
    build_strategy(attack_spec(spec)).run(api, pool, ctx)
    log = api.log()
    surrogate = ctx.trainer.train(log.x, log.outputs, seed=1, stage="test")
    return victim, api, surrogate


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_each_attack_is_well_above_chance_within_its_budget(cnn_onnx, small_cnn, held_out, pool, spec):
    victim, api, surrogate = steal(cnn_onnx, pool, spec)
    assert victim.samples == api.used == len(api.log().x)
    assert BUDGET - 32 <= api.used <= BUDGET
    x_eval = held_out[0]
    victim_labels = victim.classifier(x_eval).argmax(1)
    fidelity = agreement(surrogate, x_eval, victim_labels)
    chance = np.bincount(victim_labels).max() / len(victim_labels)
    assert fidelity > max(0.6, 4 * chance), fidelity


@pytest.mark.parametrize(
    "spec", [SPECS[0], SPECS[2], SPECS[1]], ids=["random", "adaptive-cert", "adaptive-all"]
)
def test_label_only_attacks_learn_from_labels_alone(cnn_onnx, held_out, pool, spec):
    victim, api, surrogate = steal(cnn_onnx, pool, spec, output=VictimOutputParams(kind="label"))
    assert api.log().outputs.ndim == 1 and victim.samples == api.used == BUDGET
    victim_labels = victim.classifier(held_out[0]).argmax(1)
    assert agreement(surrogate, held_out[0], victim_labels) > 0.5


def test_knockoff_without_replacement_never_queries_a_pool_sample_twice(cnn_onnx, pool):
    for spec in SPECS[:2]:
        _, api, _ = steal(cnn_onnx, pool[:400], spec)
        x = api.log().x.reshape(api.used, -1)
        pool_rows = {row.tobytes() for row in pool[:400].reshape(400, -1)}
        assert len(pool_rows) == 400  # the pool itself has no duplicates
        assert len({row.tobytes() for row in x}) == api.used
        assert all(row.tobytes() in pool_rows for row in x)


def test_jacobian_queries_are_lambda_steps_from_the_seed_set(cnn_onnx, pool):
    spec = {"name": "jacobian", "seed_size": 40, "rounds": 2, "lambda": 0.1}
    victim, api, _ = steal(cnn_onnx, pool, spec, budget=130)
    log = api.log()
    assert victim.samples == api.used == 130  # 40 seeds, 40 new, then 50 of the 80 of round 2 (reservoir)
    seeds, first = log.x[:40], log.x[40:80]
    steps = np.abs(first[:, None] - seeds[None]).reshape(40, 40, -1).max(-1).min(1)
    assert np.all(steps <= 0.1 + 1e-6) and np.all(steps > 0)
    assert log.x.min() >= 0 and log.x.max() <= 1


def test_natural_patches_pool_steals_above_chance(cnn_onnx, held_out):
    patches = load_builtin("natural-patches").x
    victim, api, surrogate = steal(cnn_onnx, patches, SPECS[0])
    assert victim.samples == api.used == BUDGET
    victim_labels = victim.classifier(held_out[0]).argmax(1)
    chance = np.bincount(victim_labels).max() / len(victim_labels)
    assert agreement(surrogate, held_out[0], victim_labels) > 2 * chance
