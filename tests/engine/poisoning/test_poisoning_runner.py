"""The poisoning runner: a backdoor job end to end, figures reproduced from the exported victim, the
clean baseline, removal and retraining, audit mode, reproducibility and bad input."""

import numpy as np
import pytest

from tests.engine.poisoning_helpers import (
    SHAPE,
    attack_specs,
    detector_specs,
    digits_split,
    make_model,
    setup,
    stamp_badnets,
)
from worker.engine.datasets import ArrayDataset
from worker.engine.models.intake import OnnxRuntimeClassifier, validate_onnx
from worker.engine.poisoning.audit import run_poisoning_audit
from worker.engine.poisoning.runner import run_poisoning
from worker.engine.poisoning.validate import PoisoningInputError
from worker.engine.training.recipe import TrainingRecipe

BADNETS = {"name": "badnets", "trigger": {"size": 2}, "target_class": 0, "rate": [0.1]}


def _run(attacks, architecture="mlp", epochs=4, detection=(), **kwargs):
    train, test = digits_split()
    return run_poisoning(
        make_model(architecture),
        train,
        test,
        attack_specs(attacks),
        detection=detector_specs(list(detection)),
        recipe=TrainingRecipe(epochs=epochs),
        input_shape=SHAPE,
        num_classes=10,
        **kwargs,
    )


@pytest.fixture(scope="module")
def backdoor_job():
    """BadNets at 10% on a small CNN, activation clustering, retraining after removal."""
    progress = []
    outcome = _run(
        [BADNETS],
        architecture="small-cnn",
        epochs=6,
        detection=[{"name": "activation_clustering"}],
        retrain_after_removal=True,
        progress=lambda fraction, stage: progress.append(fraction),
    )
    return outcome, progress


def test_backdoor_succeeds_while_clean_accuracy_holds(backdoor_job):
    outcome, _ = backdoor_job
    row = outcome.report["attacks"][0]["results"][0]
    assert row["n_poisoned"] == row["expected_poisons"] == 150
    assert row["attack_success_rate"] >= 0.9
    assert row["baseline_attack_success_rate"] <= 0.05
    assert row["clean_accuracy"] >= row["baseline_clean_accuracy"] - 0.05
    assert all(check["passed"] for check in outcome.report["checks"]), outcome.report["checks"]


def test_reported_figures_are_those_of_the_stored_victim(backdoor_job):
    outcome, _ = backdoor_job
    (victim,) = outcome.victims
    validate_onnx(victim.onnx, SHAPE, 10, (0.0, 1.0))
    _, test = digits_split()
    classify = OnnxRuntimeClassifier(victim.onnx)
    triggered = test.x[test.y != 0].copy()
    triggered[:, :, -2:, -2:] = 1.0
    row = outcome.report["attacks"][0]["results"][0]
    assert row["attack_success_rate"] == pytest.approx(float((classify(triggered).argmax(1) == 0).mean()))
    assert row["clean_accuracy"] == pytest.approx(float((classify(test.x).argmax(1) == test.y).mean()))
    assert victim.intake is not None and victim.rate == 0.1


def test_detection_and_removal(backdoor_job):
    outcome, _ = backdoor_job
    (detection,) = outcome.report["attacks"][0]["results"][0]["detection"]
    assert detection["flagged_classes"] == [0] and detection["f1"] >= 0.9
    removal = detection["after_removal"]
    assert removal["attack_success_rate"] <= 0.1
    row = outcome.report["attacks"][0]["results"][0]
    assert removal["clean_accuracy"] >= row["baseline_clean_accuracy"] - 0.05
    (baseline,) = outcome.report["detectors"]
    assert baseline["flagged_classes"] == []


def test_artifacts(backdoor_job):
    outcome, progress = backdoor_job
    train, _ = digits_split()
    poisoned = outcome.arrays["poisoned_0_badnets"]
    indices = poisoned["poison_indices"]
    assert len(indices) == 150 and (poisoned["y"][indices] == 0).all()
    np.testing.assert_array_equal(np.delete(poisoned["x"], indices, 0), np.delete(train.x, indices, 0))
    assert outcome.images["trigger_0_badnets.png"].startswith(b"\x89PNG")
    entry = outcome.report["attacks"][0]
    assert entry["trigger_png"] and len(entry["samples"]) == 4
    suspects = outcome.arrays["suspected_0_badnets"]["activation_clustering_suspected_rate0"]
    assert np.isin(suspects, indices).mean() >= 0.9
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0, abs=0.05)


def test_label_flips_and_reproducibility():
    attacks = [
        {"name": "label_flip", "mode": "targeted", "source_class": 3, "target_class": 8, "rate": [0.05]},
        {"name": "label_flip", "mode": "random", "rate": [0.3]},
    ]
    first = _run(attacks, register=False).report
    again = _run(attacks, register=False).report
    targeted, noisy = first["attacks"]
    row = targeted["results"][0]
    assert row["source_class_accuracy"] <= 0.45 and row["attack_success_rate"] == row["source_to_target_rate"]
    assert noisy["results"][0]["accuracy_drop"] == noisy["results"][0]["attack_success_rate"]
    for a, b in zip(first["attacks"], again["attacks"], strict=True):
        for ra, rb in zip(a["results"], b["results"], strict=True):
            assert {k: v for k, v in ra.items() if k != "seconds"} == {
                k: v for k, v in rb.items() if k != "seconds"
            }
    assert first["baseline"] == again["baseline"]


def test_training_is_reproducible_under_a_seed():
    train, _ = digits_split()
    state = [
        setup("mlp", epochs=2, seed=3).train(train.x, train.y, stage="t")[0].state_dict() for _ in range(2)
    ]
    other = setup("mlp", epochs=2, seed=4).train(train.x, train.y, stage="t")[0].state_dict()
    for key in state[0]:
        assert np.array_equal(state[0][key].numpy(), state[1][key].numpy())
    assert any(not np.array_equal(state[0][k].numpy(), other[k].numpy()) for k in state[0])


def test_audit_names_the_poisoned_class_and_samples():
    train, test = digits_split()
    x, y, poisons = stamp_badnets(train, 0.05)
    victim = setup("small-cnn", epochs=6).train_and_export(x, y, stage="t")
    outcome, summary = run_poisoning_audit(
        victim.onnx,
        ArrayDataset(x, y),
        test,
        detector_specs([{"name": "activation_clustering"}, {"name": "spectral_signatures"}]),
        input_shape=SHAPE,
        num_classes=10,
    )
    assert summary["suspected_classes"] == [0]
    found = outcome.arrays["suspected_indices"]["activation_clustering_suspected"]
    assert np.isin(found, poisons).mean() >= 0.9 and np.isin(poisons, found).mean() >= 0.9
    top = outcome.report["detectors"][0]["top_suspects"]
    assert top and all(entry["label"] == 0 for entry in top)
    assert outcome.report["mode"] == "audit"


@pytest.mark.parametrize(
    "change, code",
    [
        (lambda x, y: (x[:, :, :7, :7], y), "training_set_mismatch"),
        (
            lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), y),
            "dataset_nan",
        ),
        (lambda x, y: (x * 2, y), "training_set_mismatch"),
        (lambda x, y: (x, y + 5), "training_set_mismatch"),
    ],
)
def test_bad_training_sets_fail_before_training(change, code):
    train, test = digits_split()
    x, y = change(train.x, train.y)
    calls = []

    def model(seed):
        calls.append(seed)
        return make_model("mlp")(seed)

    with pytest.raises(PoisoningInputError) as error:
        run_poisoning(
            model,
            ArrayDataset(x, y),
            test,
            attack_specs([BADNETS]),
            recipe=TrainingRecipe(epochs=1),
            input_shape=SHAPE,
            num_classes=10,
        )
    assert error.value.code == code and not calls


def test_bad_attacks_fail_before_training():
    with pytest.raises(ValueError, match="larger than"):
        _run([{"name": "badnets", "trigger": {"size": 12}, "rate": [0.05]}])
    with pytest.raises(ValueError, match="less than 1"):
        _run([{"name": "badnets", "rate": [0.05, 1.5]}])
