"""The fast_vs_standard check: it passes on the real fast version and fails on a planted weak one."""

import numpy as np
import pytest
import torch

from worker.engine.batching import batch_bounds
from worker.engine.evasion.attacks.autoattack_check import (
    CHECK_NAME,
    allowed_misses,
    check_fast_vs_standard,
    fast_vs_standard_units,
    subset_size,
)
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.runner import run_evasion
from worker.engine.progress import ProgressTracker

SPEC = {
    "name": "autoattack",
    "version": "fast",
    "norm": "linf",
    "eps": [0.1],
    "steps": 30,
    "square_queries": 200,
}


def _data(model, held_out, n: int) -> EvaluationData:
    x, y = torch.as_tensor(held_out[0][:n]), torch.as_tensor(held_out[1][:n])
    with torch.no_grad():
        logits = model(x)
    return EvaluationData(x, y, logits, logits.argmax(1) == y, batch_bounds(n, 64))


def _check(model, data, spec, success: np.ndarray, judge=None) -> list[dict]:
    arrays = {"attacked": data.clean_correct.numpy(), "success": success[None]}
    return check_fast_vs_standard(
        model, data, [spec], [arrays], input_range=(0.0, 1.0), seed=0, device=torch.device("cpu"),
        progress=ProgressTracker(1.0, None), judge=judge,
    )  # fmt: skip


class _AlwaysZero(torch.nn.Module):
    """A judge that answers class 0 for every input (the deployed model a defense's check must use)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float()


@pytest.mark.slow
def test_the_standard_run_is_judged_by_the_judge_when_given(small_cnn, held_out):
    """Judged by a model answering 0 to everything, standard 'broke' exactly the attacked samples not of 0."""
    data = _data(small_cnn, held_out, 40)
    attacked = data.clean_correct.numpy()
    spec = {**SPEC, "fast_vs_standard": int(attacked.sum())}
    (check,) = _check(small_cnn, data, spec, np.zeros(40, dtype=bool), judge=_AlwaysZero())
    expected = int((data.y.numpy()[attacked] != 0).sum())
    assert f"standard broke {expected} sample(s)" in check["detail"]


@pytest.mark.slow
def test_check_fails_on_a_planted_weak_fast_version_and_names_the_rows(small_cnn, held_out):
    """A 'fast' result that broke nothing: standard breaks about 40% of the subset, far past the tolerance."""
    data = _data(small_cnn, held_out, 60)
    (check,) = _check(small_cnn, data, {**SPEC, "fast_vs_standard": 30}, np.zeros(60, dtype=bool))
    assert check["name"] == CHECK_NAME and not check["passed"]
    assert "on 30 random attacked samples" in check["detail"] and "rows " in check["detail"]
    assert "use version 'standard'" in check["detail"]


@pytest.mark.slow
def test_check_passes_when_fast_broke_what_standard_breaks(small_cnn, held_out):
    """Every attacked sample marked broken by 'fast': nothing standard breaks is missed."""
    data = _data(small_cnn, held_out, 60)
    (check,) = _check(small_cnn, data, {**SPEC, "fast_vs_standard": 20}, data.clean_correct.numpy().copy())
    assert check["passed"] and "standard broke 0 sample(s)" in check["detail"]


def test_subset_defaults_tolerance_and_opt_out(small_cnn, held_out):
    assert (
        subset_size({}, 500) == 100
        and subset_size({}, 40) == 40
        and subset_size({"fast_vs_standard": 7}, 40) == 7
    )
    assert allowed_misses(100) == 1 and allowed_misses(500) == 3
    data = _data(small_cnn, held_out, 30)
    assert _check(small_cnn, data, {**SPEC, "fast_vs_standard": 0}, np.zeros(30, dtype=bool)) == []
    assert _check(small_cnn, data, {**SPEC, "version": "standard"}, np.zeros(30, dtype=bool)) == []
    assert (
        fast_vs_standard_units(30, [SPEC]) > 0
        and fast_vs_standard_units(30, [{**SPEC, "version": "standard"}]) == 0
    )


@pytest.mark.slow
def test_an_evasion_job_with_fast_autoattack_reports_the_check(small_cnn, held_out):
    x, y = held_out[0][:50], held_out[1][:50]
    report = run_evasion(small_cnn, x, y, [{**SPEC, "fast_vs_standard": 25}], seed=0).report
    (check,) = [check for check in report["checks"] if check["name"] == CHECK_NAME]
    assert check["passed"], check["detail"]
    row = report["attacks"][0]["results"][0]
    assert row["breakdown"]["targets"]["ranking"] == "runner_up_then_malt"
    assert row["breakdown"]["passes_per_sample"] > 0
