"""Model scans: a planted BadNets model is flagged with its target class, a clean one is not."""

import numpy as np
import pytest

from app.schemas.poisoning_scan import NeuralCleanseScanParams
from tests.engine.poisoning_helpers import digits_split, setup, stamp_badnets
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.scan.base import ScanData, anomaly_indices, findings
from worker.engine.poisoning.scan.budget import trigger_search
from worker.engine.poisoning.scan.registry import build_scanner
from worker.engine.poisoning.scan.schedule import CostSchedule


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def planted(split):
    """small-cnn trained on digits with BadNets at 5% (2x2 white patch, all to class 0), as ONNX."""
    train, _ = split
    x, y, _ = stamp_badnets(train, 0.05)
    return setup("small-cnn", epochs=8, seed=1).train_and_export(x, y, stage="test").onnx


@pytest.fixture(scope="module")
def clean(split):
    """small-cnn trained on clean digits, as ONNX."""
    train, _ = split
    return setup("small-cnn", epochs=8, seed=1).train_and_export(train.x, train.y, stage="test").onnx


def _data(split) -> ScanData:
    _, test = split
    return ScanData(test.x[:150], test.y[:150], 10, (0.0, 1.0))


@pytest.mark.slow
def test_neural_cleanse_flags_the_planted_class_and_its_trigger_works(planted, split):
    result = build_scanner({"name": "neural_cleanse", "steps": 200}).scan(
        load_onnx_module(planted), _data(split)
    )
    assert result.flagged == [0]
    assert result.classes[0].anomaly_index > 2
    assert sorted(result.triggers) == [0]
    trigger = result.triggers[0]
    # The reversed trigger is small (the planted one covers 4 of 64 pixels) and sends clean inputs of
    # other classes to class 0, measured on the model as exported, through onnxruntime.
    assert trigger.mask[0].sum() < 8
    _, test = split
    others = test.x[test.y != 0]
    labels = OnnxRuntimeClassifier(planted)(trigger.apply(others)).argmax(1)
    assert (labels == 0).mean() >= 0.9
    assert result.classes[0].success >= 0.9


@pytest.mark.slow
def test_neural_cleanse_flags_nothing_on_a_clean_model(clean, split):
    # The default budget (600 steps): at 200 the schedule has not shrunk the masks and classes 5 and 9
    # of this clean model pass the threshold.
    result = build_scanner({"name": "neural_cleanse"}).scan(load_onnx_module(clean), _data(split))
    assert result.flagged == []
    # The report still shows the most anomalous small trigger.
    assert len(result.triggers) == 1


@pytest.mark.slow
def test_b3d_finds_the_planted_class_from_queries_alone(planted, split):
    result = build_scanner({"name": "b3d", "steps": 120}).scan(OnnxRuntimeClassifier(planted), _data(split))
    norms = [c.norm for c in result.classes]
    assert int(np.argmin(norms)) == 0
    assert result.suspect == 0
    assert result.details["queries"] > 0


@pytest.mark.parametrize(
    "bad", [{"name": "nope"}, {"name": "neural_cleanse", "steps": 0}, {"name": "b3d", "x": 1}]
)
def test_bad_scanner_specs_are_refused(bad):
    with pytest.raises(ValueError):
        build_scanner(bad)


def test_scan_data_needs_three_classes_and_images():
    x = np.zeros((4, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="3 classes"):
        ScanData(x, np.zeros(4, dtype=np.int64), 2, (0.0, 1.0))
    with pytest.raises(ValueError, match="image"):
        ScanData(np.zeros((4, 64), dtype=np.float32), np.zeros(4, dtype=np.int64), 10, (0.0, 1.0))


def test_mad_flags_only_small_outliers():
    norms = np.array([10.0, 11, 9, 10.5, 9.5, 10, 2.0, 25.0])
    indices = anomaly_indices(norms)
    assert indices[6] < -2 and indices[7] > 2
    rows = findings(norms, np.ones(8), 2.0)
    assert [r.label for r in rows if r.flagged] == [6]


def test_cost_schedule_raises_and_lowers_the_cost():
    schedule = CostSchedule(2, init_cost=1.0, patience=2, multiplier=2.0)
    active = np.ones(2, dtype=bool)
    for _ in range(2):
        schedule.step(np.array([1.0, 0.0]), np.array([5.0, 5.0]), active)
    assert schedule.cost[0] == 2.0 and schedule.cost[1] == pytest.approx(2.0**-1.5)
    assert schedule.best_norm[0] == 5.0 and np.isinf(schedule.best_norm[1])


def test_cost_starts_at_zero_until_the_trigger_succeeds_for_patience_epochs():
    # The released code's default: no l1 weight until the class's trigger works, then init_cost.
    schedule = CostSchedule(1, init_cost=1e-3, patience=3, reset_cost_to_zero=True)
    active = np.ones(1, dtype=bool)
    for success in (0.5, 1.0, 1.0):
        schedule.step(np.array([success]), np.array([30.0]), active)
        assert schedule.cost[0] == 0.0
    schedule.step(np.array([1.0]), np.array([30.0]), active)
    assert schedule.cost[0] == 1e-3
    for _ in range(2):  # the up count restarted when the cost was set (that epoch counted as one)
        schedule.step(np.array([1.0]), np.array([20.0]), active)
    assert schedule.cost[0] == pytest.approx(1.5e-3) and schedule.best_norm[0] == 20.0


def test_trigger_stamps_mask_and_pattern():
    trigger = Trigger(mask=np.full((1, 2, 2), 0.5, np.float32), pattern=np.ones((1, 2, 2), np.float32))
    assert np.allclose(trigger.apply(np.zeros((1, 1, 2, 2), np.float32)), 0.5)


def test_trigger_search_moves_the_schedule_once_per_epoch():
    budget = NeuralCleanseScanParams(
        name="neural_cleanse", epoch_steps=2, patience=1, init_cost=1.0, cost_multiplier=2.0
    )
    search = trigger_search(budget, 3)
    active = np.array([0, 2])
    # Mid-epoch nothing moves; at the epoch's end the mean hit rate decides (class 0 reached 0.99).
    assert len(search.record(active, np.array([1.0, 1.0]), np.array([4.0, 6.0]))) == 0
    improved = search.record(active, np.array([1.0, 0.5]), np.array([3.0, 6.0]))
    assert improved.tolist() == [0]  # rows of `active`: class 0 only
    assert search.epochs.tolist() == [1, 0, 1]
    assert search.cost(np.arange(3)) == pytest.approx([2.0, 1.0, 2.0**-1.5])
    assert search.found().tolist() == [True, False, False]
    with pytest.raises(ValueError, match="cost_multiplier"):
        build_scanner({"name": "neural_cleanse", "cost_multiplier": 1.0})
    with pytest.raises(ValueError, match="epoch_steps"):
        build_scanner({"name": "b3d", "epoch_steps": 0})
