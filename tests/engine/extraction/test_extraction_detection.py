"""PRADA raises an alarm on a Jacobian stream and none on natural data."""

import numpy as np
import pytest

from app.schemas.extraction import PradaParams, VictimOutputParams
from tests.engine.extraction_helpers import SHAPE, CountingVictim, attack_spec, context, mlp_factory
from worker.engine.datasets import load_builtin
from worker.engine.extraction.detection import Prada
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies import build_strategy


def stream(onnx, pool, spec, budget):
    api = QueryInterface(
        CountingVictim(onnx),
        num_classes=10,
        input_shape=SHAPE,
        input_range=(0.0, 1.0),
        output=VictimOutputParams(kind="label"),
        defense=None,
        budget=budget,
        seed=0,
    )
    build_strategy(attack_spec(spec)).run(api, pool, context(mlp_factory, epochs=10))
    return api.log()


@pytest.fixture(scope="module")
def train_pool():
    return load_builtin("digits-train").x


def test_prada_alarms_on_a_jacobian_stream(cnn_onnx, train_pool):
    log = stream(cnn_onnx, train_pool, {"name": "jacobian", "seed_size": 100, "rounds": 4}, 1000)
    alarm = Prada(PradaParams(name="prada", delta=0.9)).alarm_at(log.x, log.victim_labels)
    assert alarm is not None and alarm <= len(log.x)


def test_prada_stays_quiet_on_natural_streams(cnn_onnx, held_out, train_pool):
    detector = Prada(PradaParams(name="prada", delta=0.9))
    x = held_out[0]
    assert detector.alarm_at(x, CountingVictim(cnn_onnx)(x).argmax(1)) is None
    log = stream(cnn_onnx, train_pool, {"name": "knockoff", "strategy": "random"}, 1000)
    assert detector.alarm_at(log.x, log.victim_labels) is None


def test_prada_needs_enough_distances_before_testing():
    rng = np.random.default_rng(0)
    x = np.repeat(rng.uniform(size=(1, 1, 8, 8)), 50, axis=0) + rng.uniform(0, 1e-3, size=(50, 1, 8, 8))
    assert (
        Prada(PradaParams(name="prada", min_distances=100)).alarm_at(
            x.astype(np.float32), np.zeros(50, dtype=np.int64)
        )
        is None
    )
