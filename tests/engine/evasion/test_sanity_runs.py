"""The sanity checks that run extra attacks catch gradient masking and unconverged attacks."""

import torch
from torch import nn

from worker.engine.evasion.runner import run_evasion
from worker.engine.evasion.sanity_checks import check_white_box_beats_black_box


class _Quantized(nn.Module):
    """A model behind input quantisation: its input gradient is zero almost everywhere (masked)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def test_a_sound_evaluation_passes_the_run_checks(small_cnn, held_out):
    x, y = held_out
    spec = {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "targeted": False, "steps": 20}
    report = run_evasion(small_cnn, x[:120], y[:120], [spec], seed=0).report
    checks = _checks(report)
    assert checks["unbounded_attack_breaks_everything"]["passed"], checks
    assert checks["more_iterations_change_little"]["passed"], checks


def test_gradient_masking_fails_the_unbounded_check(small_cnn, held_out):
    x, y = held_out
    spec = {
        "name": "pgd",
        "norm": "linf",
        "eps": [0.05, 0.1],
        "targeted": False,
        "steps": 10,
        "random_start": False,
    }
    report = run_evasion(_Quantized(small_cnn), x[:80], y[:80], [spec], seed=0).report
    check = _checks(report)["unbounded_attack_breaks_everything"]
    assert not check["passed"]
    assert "gradient masking" in check["detail"]


def test_an_unconverged_attack_fails_the_doubled_budget_check(small_cnn, held_out):
    x, y = held_out
    spec = {
        "name": "pgd",
        "norm": "linf",
        "eps": [0.1, 0.2, 0.3],
        "targeted": False,
        "steps": 4,
        "step_size": 0.01,
        "random_start": False,
        "restarts": 1,
    }
    report = run_evasion(small_cnn, x[:150], y[:150], [spec], seed=0).report
    check = _checks(report)["more_iterations_change_little"]
    assert not check["passed"], check
    assert "not converged" in check["detail"]


def test_sanity_runs_can_be_switched_off(small_cnn, held_out):
    x, y = held_out
    spec = {"name": "fgsm", "norm": "linf", "eps": [0.1], "targeted": False}
    report = run_evasion(small_cnn, x[:50], y[:50], [spec], seed=0, sanity_runs=False).report
    assert "unbounded_attack_breaks_everything" not in _checks(report)


def _fake(white: float, black: float) -> dict:
    def entry(name: str, threat: str, robust: float) -> dict:
        return {
            "name": name,
            "norm": "linf",
            "targeted": False,
            "target_mode": None,
            "threat_model": threat,
            "results": [{"eps": 0.1, "robust_accuracy": robust}],
        }

    return {
        "n_samples": 100,
        "clean_accuracy": 0.9,
        "attacks": [entry("pgd", "white-box", white), entry("square", "black-box", black)],
    }


def test_black_box_beating_white_box_is_flagged_as_gradient_masking():
    failed = check_white_box_beats_black_box(_fake(white=0.6, black=0.3))
    assert failed is not None and not failed["passed"] and "gradient masking" in failed["detail"]
    two_points = check_white_box_beats_black_box(_fake(white=0.33, black=0.31))
    assert two_points is not None and not two_points["passed"]
    passed = check_white_box_beats_black_box(_fake(white=0.305, black=0.3))
    assert passed is not None and passed["passed"]
