"""A prepared defense stored as bytes and restored elsewhere gives the original's report byte for byte."""

import json

from tests.engine.defense.test_defense_evaluation_slices import (
    ATTACKS,
    BATCH,
    RANDOMIZED,
    N,
    _without_seconds,
)
from tests.engine.defense_helpers import (
    RecordingExport,
    digits_split,
    evaluation_of,
    trainable_factory,
    typed,
)
from worker.engine.defense.evaluation import evaluate_defense_slice
from worker.engine.defense.prepared_bytes import prepared_to_bytes, restore_prepared
from worker.engine.defense.runner import PreparedDefense, defense_plan, finish_defense_run, prepare_defense


def _report(prepared: PreparedDefense) -> str:
    """The report from two slices of the prepared defense."""
    plan = defense_plan(prepared)
    parts = [
        evaluate_defense_slice(
            plan, prepared.x[a:b], prepared.y[a:b], start=a, total=N, tracker=prepared.context.tracker
        )
        for a, b in ((0, 16), (16, N))
    ]
    report = finish_defense_run(prepared, defense_plan(prepared), parts).report
    return json.dumps(_without_seconds(report), sort_keys=True)


def test_a_restored_randomized_preprocessing_defense_gives_the_same_report(small_cnn):
    defense = {"name": "preprocessing", "transforms": RANDOMIZED, "eot_draws": 2}
    evaluation = evaluation_of(
        {"attacks": ATTACKS[:2], "max_samples": N, "batch_size": BATCH, "sanity_runs": False}
    )
    _, (x, y) = digits_split()
    prepared = prepare_defense(
        typed(defense), evaluation, undefended=small_cnn, x=x, y=y, num_classes=10, seed=2
    )
    original = _report(prepared)
    data = prepared_to_bytes(prepared)
    restored = restore_prepared(
        data, typed(defense), evaluation, undefended=small_cnn, x=x, y=y, num_classes=10, seed=2
    )
    assert restored.onnx is None and not restored.hardened.trained
    assert _report(restored) == original


def test_a_restored_adversarially_trained_defense_with_a_trained_baseline_gives_the_same_report(small_cnn):
    defense = {"name": "adversarial_training", "method": "fast", "eps": 0.1, "epochs": 1, "init": "random"}
    evaluation = evaluation_of(
        {"attacks": ATTACKS[:1], "max_samples": N, "batch_size": BATCH, "sanity_runs": False}
    )
    train, (x, y) = digits_split()
    inputs = {"undefended": small_cnn, "x": x, "y": y, "num_classes": 10, "seed": 3}
    export = RecordingExport()
    prepared = prepare_defense(
        typed(defense),
        evaluation,
        trainable=trainable_factory(small_cnn),
        train=train,
        export=export,
        **inputs,
    )
    original = _report(prepared)
    restored = restore_prepared(prepared_to_bytes(prepared, export), typed(defense), evaluation, **inputs)
    assert restored.hardened.trained and restored.hardened.baseline is not None
    assert restored.onnx == prepared.onnx
    assert _report(restored) == original
