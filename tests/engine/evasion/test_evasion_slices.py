"""A split evaluation gives the report of one run: slices of whole batches, joined in any order."""

import copy

import numpy as np
import pytest

from app.schemas.evasion import EvasionParams
from worker.engine.evasion.runner import evaluate_slice, finish_evasion, run_evasion
from worker.engine.evasion.slices import slice_from_bytes, slice_to_bytes

N, BATCH = 120, 20


def _attacks() -> list[dict]:
    """Every kind of randomness: random starts and targets, black-box queries, an ensemble, minimum norm."""
    params = EvasionParams.model_validate(
        {
            "attacks": [
                {"name": "fgsm", "eps": [0.05, 0.1]},
                {"name": "pgd", "norm": "l2", "eps": [0.5, 1.0], "steps": 5, "targeted": True,
                 "target_mode": "random"},
                {"name": "square", "eps": [0.1], "queries": 40},
                {"name": "deepfool", "eps": [0.05, 0.2], "steps": 10},
                {"name": "autoattack", "eps": [0.1], "steps": 5, "n_target_classes": 2, "square_queries": 30},
            ]
        }
    )  # fmt: skip
    return [attack.model_dump(mode="json") for attack in params.attacks]


def _without_seconds(report: dict) -> dict:
    """The report without wall-clock seconds (the only figure that may differ between runs)."""
    report = copy.deepcopy(report)
    for attack in report["attacks"]:
        for row in attack["results"]:
            row.pop("seconds", None)
    return report


@pytest.mark.slow
def test_split_report_equals_one_run(small_cnn, held_out):
    x, y = held_out[0][:N], held_out[1][:N]
    attacks = _attacks()
    whole = run_evasion(small_cnn, x, y, attacks, batch_size=BATCH, seed=3)
    bounds = [(40, 100), (0, 40), (100, 120)]  # out of order, uneven, whole batches
    parts = [
        slice_from_bytes(
            slice_to_bytes(
                evaluate_slice(small_cnn, x[a:b], y[a:b], attacks, start=a, total=N, batch_size=BATCH, seed=3)
            )
        )
        for a, b in bounds
    ]
    split = finish_evasion(small_cnn, x, y, attacks, parts, batch_size=BATCH, seed=3)
    assert _without_seconds(split.report) == _without_seconds(whole.report)
    assert split.adversarial.keys() == whole.adversarial.keys()
    for name, arrays in whole.adversarial.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(split.adversarial[name][key], value, err_msg=f"{name}/{key}")
    # The attacks really broke samples, so equal figures are not equal zeros.
    assert any(row["n_succeeded"] for entry in whole.report["attacks"] for row in entry["results"])


def test_slice_must_start_at_a_whole_batch(small_cnn, held_out):
    x, y = held_out
    with pytest.raises(ValueError, match="whole batch"):
        evaluate_slice(small_cnn, x[5:25], y[5:25], _attacks()[:1], start=5, total=40, batch_size=BATCH)


def test_slices_must_cover_the_set(small_cnn, held_out):
    x, y = held_out[0][:40], held_out[1][:40]
    part = evaluate_slice(small_cnn, x[:20], y[:20], _attacks()[:1], start=0, total=40, batch_size=BATCH)
    with pytest.raises(ValueError, match="cover 20 of 40"):
        finish_evasion(small_cnn, x, y, _attacks()[:1], [part], batch_size=BATCH)
