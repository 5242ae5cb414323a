"""A defense evaluation split into slices gives the unsplit section; every figure is the deployed judge's."""

import json
from typing import Any

import pytest
import torch
from torch import nn

from app.schemas.defense_transforms import transform_specs
from app.schemas.evasion import AttackParamsBase
from tests.engine.defense_helpers import digits_split, evaluation_of, run, typed
from worker.engine.defense.evaluation import (
    EvaluationPlan,
    defense_slice_from_bytes,
    defense_slice_to_bytes,
    evaluate_defense,
    evaluate_defense_slice,
    finish_defense,
    module_classifier,
)
from worker.engine.defense.preprocessing import build_transforms, defended_classifier
from worker.engine.defense.preprocessing.defense import pipeline_runs
from worker.engine.defense.preprocessing.pipeline import SEARCH_STREAM
from worker.engine.defense.runner import defense_plan, finish_defense_run, prepare_defense
from worker.engine.evasion.attacks.registry import as_spec
from worker.engine.progress import ProgressTracker

N, BATCH = 40, 8
ATTACKS = [
    {"name": "pgd", "eps": [0.1, 0.2], "steps": 3},
    {"name": "fgsm", "eps": [0.15], "targeted": True, "target_mode": "random"},
    {"name": "square", "eps": [0.2], "queries": 15},
]
DETERMINISTIC = [{"name": "jpeg", "quality": 60}, {"name": "bit_depth", "bits": 3}]
RANDOMIZED = [{"name": "random_resize_pad", "min_scale": 0.7}, {"name": "gaussian_noise", "sigma": 0.1}]


def _specs() -> list[AttackParamsBase]:
    specs = [as_spec(spec) for spec in ATTACKS]
    assert all(isinstance(spec, AttackParamsBase) for spec in specs)
    return specs  # type: ignore[return-value]


def _plan(model: nn.Module, records: list[dict[str, Any]], sanity: bool) -> EvaluationPlan:
    """A preprocessing defense in front of model, judged by the deployed transforms (onnx stand-in: torch)."""
    specs, classify = transform_specs(records), module_classifier(model, torch.device("cpu"))
    return EvaluationPlan(
        undefended=model,
        undefended_classify=classify,
        undefended_black_box=None,
        runs=pipeline_runs(
            model, build_transforms(specs), _specs(), eot_draws=2, input_range=(0.0, 1.0), seed=6
        ),
        deployed=defended_classifier(classify, specs, seed=6),
        attacks=_specs(),
        input_range=(0.0, 1.0),
        seed=6,
        device=torch.device("cpu"),
        batch_size=BATCH,
        sanity_runs=sanity,
        deployed_search=defended_classifier(classify, specs, seed=6, stream=SEARCH_STREAM),
    )


def _without_seconds(value: Any) -> Any:
    """The section without wall-clock seconds (the only field that depends on the machine's speed)."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _tracker() -> ProgressTracker:
    return ProgressTracker(1.0, None)


@pytest.mark.parametrize(("records", "sanity"), [(DETERMINISTIC, True), (RANDOMIZED, False)])
def test_slices_in_any_order_and_size_give_the_unsplit_section(small_cnn, records, sanity):
    x, y = (array[:N] for array in digits_split()[1])
    plan = _plan(small_cnn, records, sanity)
    whole, whole_arrays = evaluate_defense(plan, x, y, _tracker())
    for bounds in (((16, 40), (0, 16)), ((32, 40), (8, 32), (0, 8))):
        plan = _plan(small_cnn, records, sanity)  # a fresh worker: nothing carried over from another slice
        stored = [
            defense_slice_to_bytes(
                evaluate_defense_slice(plan, x[a:b], y[a:b], start=a, total=N, tracker=_tracker())
            )
            for a, b in bounds
        ]
        parts = [defense_slice_from_bytes(data) for data in stored]
        section, arrays = finish_defense(_plan(small_cnn, records, sanity), x, y, parts, _tracker())
        assert json.dumps(_without_seconds(section)) == json.dumps(_without_seconds(whole))
        assert arrays.keys() == whole_arrays.keys()
        for name, found in arrays.items():
            for key, value in found.items():
                assert value.tobytes() == whole_arrays[name][key].tobytes(), (name, key)
    rows = [row for run in whole["defended"]["runs"] for entry in run["attacks"] for row in entry["results"]]
    assert any(row["robust_accuracy"] < whole["defended"]["clean_accuracy"] for row in rows)
    assert all(row["robust_accuracy"] <= whole["defended"]["clean_accuracy"] for row in rows)


def test_a_slice_must_start_on_a_whole_batch_and_slices_must_cover_the_set(small_cnn):
    x, y = (array[:N] for array in digits_split()[1])
    plan = _plan(small_cnn, DETERMINISTIC, False)
    with pytest.raises(ValueError, match="whole batch"):
        evaluate_defense_slice(plan, x[3:11], y[3:11], start=3, total=N, tracker=_tracker())
    part = evaluate_defense_slice(plan, x[:16], y[:16], start=0, total=N, tracker=_tracker())
    with pytest.raises(ValueError, match="cover 16 of 40"):
        finish_defense(plan, x, y, [part], _tracker())


def test_the_staged_runner_gives_the_report_of_run_defense(small_cnn):
    """prepare_defense, defense_plan, a slice per shard and finish_defense_run: run_defense's report."""
    defense = {"name": "preprocessing", "transforms": RANDOMIZED, "eot_draws": 2}
    evaluation = {"attacks": ATTACKS[:2], "max_samples": N, "batch_size": BATCH, "sanity_runs": False}
    whole = run(defense, evaluation, small_cnn, seed=2)
    _, (x, y) = digits_split()
    prepared = prepare_defense(
        typed(defense), evaluation_of(evaluation), undefended=small_cnn, x=x, y=y, num_classes=10, seed=2
    )
    plan = defense_plan(prepared)
    parts = [
        evaluate_defense_slice(
            plan, prepared.x[a:b], prepared.y[a:b], start=a, total=N, tracker=prepared.context.tracker
        )
        for a, b in ((24, 40), (0, 24))
    ]
    outcome = finish_defense_run(prepared, defense_plan(prepared), parts)
    assert json.dumps(_without_seconds(outcome.report)) == json.dumps(_without_seconds(whole.report))
    assert outcome.arrays.keys() == whole.arrays.keys()
