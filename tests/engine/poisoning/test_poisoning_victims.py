"""A poisoning job run victim by victim (as its shards run them, in any order, through their bytes) and
merged gives the report, artifacts and registered victims of the job run in one piece."""

import numpy as np

from tests.engine.poisoning_helpers import SHAPE, attack_specs, detector_specs, digits_split, make_model
from worker.engine.datasets import ArrayDataset
from worker.engine.poisoning.runner import run_poisoning
from worker.engine.poisoning.victim_run import runs_from_bytes, runs_to_bytes
from worker.engine.training.recipe import TrainingRecipe

ATTACKS = [
    {"name": "badnets", "rate": [0.05, 0.1]},
    {"name": "feature_collision", "targets": 2, "steps": 3, "rate": [0.02]},
]


def _measured(value: object) -> object:
    """The report without wall-clock seconds."""
    if isinstance(value, dict):
        return {key: _measured(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [_measured(item) for item in value]
    return value


def test_victims_run_apart_and_merged_give_the_whole_report():
    train, test = digits_split()
    train, test = ArrayDataset(train.x[:300], train.y[:300]), ArrayDataset(test.x[:80], test.y[:80])

    def job(**split):
        return run_poisoning(
            make_model("mlp"), train, test, attack_specs(ATTACKS), recipe=TrainingRecipe(epochs=1),
            input_shape=SHAPE, num_classes=10, detection=detector_specs([{"name": "spectral_signatures"}]),
            retrain_after_removal=True, seed=2, **split,
        )  # fmt: skip

    whole = job()
    done = {}
    for key in [(1, 0, 1), (0, 1, 0), (1, 0, 0), (0, 0, 0)]:  # every victim, not in report order
        done |= runs_from_bytes(runs_to_bytes(job(only={key}).runs))
    merged = job(done=done)
    assert _measured(merged.report) == _measured(whole.report)
    assert [(v.attack, v.rate, v.onnx) for v in merged.victims] == [
        (v.attack, v.rate, v.onnx) for v in whole.victims
    ]
    assert len(whole.victims) == 2
    assert merged.arrays.keys() == whole.arrays.keys() and merged.images == whole.images
    for name, arrays in whole.arrays.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(merged.arrays[name][key], value)
