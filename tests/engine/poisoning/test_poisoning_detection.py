"""Detectors: planted poisons found at the last conv block, nothing flagged on clean data, the gate."""

import numpy as np
import pytest

from tests.engine.onnx_fixtures import export_onnx
from tests.engine.poisoning_helpers import SHAPE, detector_specs, digits_split, setup, stamp_badnets
from worker.engine.poisoning.detection.base import DetectionData
from worker.engine.poisoning.detection.features import FeatureReader
from worker.engine.poisoning.detection.gate import gate_classes
from worker.engine.poisoning.detection.registry import build_detector
from worker.engine.poisoning.metrics import precision_recall_f1


def _detector(entry):
    """The engine detector of a params.detection entry."""
    return build_detector(detector_specs([entry])[0])


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def backdoored(split):
    """A small CNN trained on digits with BadNets at 5% (2x2 white patch, all to 0): ONNX, x, y, poisons."""
    train, _ = split
    x, y, poisons = stamp_badnets(train, 0.05)
    victim = setup("small-cnn", epochs=8).train_and_export(x, y, stage="test")
    return victim.onnx, x, y, poisons


def _data(onnx, x, y, split, triggered=None):
    _, test = split
    return DetectionData(
        x=x,
        y=y,
        num_classes=10,
        input_range=(0.0, 1.0),
        onnx=onnx,
        clean_x=test.x,
        clean_y=test.y,
        triggered_x=triggered,
    )


@pytest.mark.parametrize("name", ["activation_clustering", "spectral_signatures"])
def test_feature_detectors_find_badnets_poisons(backdoored, split, name):
    onnx, x, y, poisons = backdoored
    result = _detector({"name": name}).detect(_data(onnx, x, y, split))
    assert result.flagged_classes == [0]
    assert precision_recall_f1(result.suspected, poisons)["f1"] >= 0.9
    assert result.details["rule"] == "last_conv"


@pytest.mark.parametrize("name", ["activation_clustering", "spectral_signatures", "strip"])
def test_clean_model_gets_no_class_flagged(small_cnn, split, name):
    train, _ = split
    result = _detector({"name": name}).detect(_data(export_onnx(small_cnn, SHAPE), train.x, train.y, split))
    assert result.flagged_classes == []
    assert len(result.suspected) == 0
    assert result.scores.shape == (len(train.y),)


def test_strip_screens_triggered_inputs(backdoored, split):
    onnx, x, y, poisons = backdoored
    _, test = split
    triggered = test.x[test.y != 0].copy()
    triggered[:, :, -2:, -2:] = 1.0
    result = _detector({"name": "strip"}).detect(_data(onnx, x, y, split, triggered))
    inference = result.details["inference"]
    # On 8x8 digits a superimposed digit often overrides the 2x2 trigger: STRIP screens a share of the
    # triggered inputs at a low false rejection rate, far from all of them (see the README).
    assert inference["detection_rate"] >= max(0.15, 3 * inference["false_rejection_rate"])
    assert inference["false_rejection_rate"] <= 0.05
    assert result.flagged_classes == [0]
    scores = precision_recall_f1(result.suspected, poisons)
    assert scores["precision"] >= 0.8 and scores["recall"] >= 0.5


def test_feature_layer_choices(small_cnn, mlp):
    cnn = export_onnx(small_cnn, SHAPE)
    auto = FeatureReader(cnn, "auto")
    assert auto.rule == "last_conv"
    logits, features = auto(np.zeros((3, *SHAPE), np.float32))
    assert logits.shape == (3, 10) and features.shape == (3, 64 * 2 * 2)
    assert FeatureReader(cnn, "penultimate")(np.zeros((2, *SHAPE), np.float32))[1].shape == (2, 128)
    assert FeatureReader(export_onnx(mlp, SHAPE), "auto").rule == "penultimate"
    with pytest.raises(ValueError, match="no last_conv"):
        FeatureReader(export_onnx(mlp, SHAPE), "last_conv")
    with pytest.raises(ValueError, match="no value named"):
        FeatureReader(cnn, "nope")


def test_features_come_from_the_graph_it_reads(small_cnn):
    import torch

    reader = FeatureReader(export_onnx(small_cnn, SHAPE), "penultimate")
    x = np.random.default_rng(0).uniform(0, 1, (5, *SHAPE)).astype(np.float32)
    captured = []
    handle = small_cnn[-1].register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        small_cnn(torch.as_tensor(x))
    handle.remove()
    np.testing.assert_allclose(reader(x)[1], captured[0].numpy(), atol=1e-4)


def test_gate_keeps_a_style_cluster_and_flags_an_implant():
    """An implant of other classes' samples plus a shared offset is flagged; a style cluster is not."""
    rng = np.random.default_rng(0)
    dims, classes = 32, 6
    centres = rng.normal(0, 4, (classes, dims))
    x = [centres[label] + rng.normal(0, 1, (100, dims)) for label in range(classes)]
    y = [np.full(100, label) for label in range(classes)]
    x.append(centres[1] + rng.normal(0, 1, (25, dims)) + 6 * np.eye(dims)[0])  # a style of class 1
    y.append(np.full(25, 1))
    sources = rng.integers(2, classes, 40)  # other classes' samples with a trigger, labelled 0
    x.append(centres[sources] + rng.normal(0, 1, (40, dims)) + 6 * np.eye(dims)[1])
    y.append(np.zeros(40, dtype=int))
    x, y = np.concatenate(x), np.concatenate(y)
    suspects = np.zeros(len(y), bool)
    suspects[100 * classes :] = True
    verdicts = gate_classes(x, y, suspects, classes)
    assert [v.flagged for v in verdicts] == [True] + [False] * (classes - 1)
    assert verdicts[0].own_share < 0.2 and verdicts[1].own_share > 0.9


def test_detector_parameters_are_checked():
    with pytest.raises(ValueError, match="Extra inputs"):
        _detector({"name": "activation_clustering", "clusters": 3})
    with pytest.raises(ValueError, match="does not match"):
        _detector({"name": "neural_cleanse"})
    with pytest.raises(ValueError):
        _detector({"name": "strip", "frr": 0})


def test_detection_data_caches_features(small_cnn, split):
    train, _ = split
    data = _data(export_onnx(small_cnn, SHAPE), train.x[:50], train.y[:50], split)
    assert data.features("auto") is data.features("auto")
