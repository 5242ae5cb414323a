"""Defensive distillation: a saturated softmax masks gradients; attacks on the logits break it."""

import numpy as np
import pytest
import torch

from tests.engine.defense_helpers import RecordingExport, check, digits_split, pgd, run, worst
from worker.engine.defense.views import MarginPGD, SoftmaxOutput, Tempered, margin
from worker.engine.models.intake import OnnxRuntimeClassifier

EPS = 0.2
T = 100.0


@pytest.fixture(scope="module")
def distilled(small_cnn):
    """A student distilled at T = 100 from a teacher trained at T (6 epochs each), exported."""
    export = RecordingExport()
    defense = {"name": "distillation", "temperature": T, "epochs": 6, "learning_rate": 0.005}
    return run(defense, pgd([EPS]), small_cnn, export=export), export


def test_naive_softmax_attack_fails_and_attacks_on_the_logits_break_the_student(distilled):
    report = distilled[0].report
    naive, adaptive = worst(report, "naive", EPS), worst(report, "adaptive", EPS)
    assert naive >= 0.5 and adaptive <= 0.1 and naive >= adaptive + 0.4
    assert report["headline"]["robust_accuracy"] == worst(report, "all", EPS) <= adaptive
    assert report["headline"]["naive_robust_accuracy"] == naive
    assert not check(report, "naive_matches_adaptive")["passed"]
    saturation = report["softmax_saturation"]
    assert saturation["saturated_share"] > 0.5 and not check(report, "softmax_not_saturated")["passed"]
    views = [(r["role"], r["view"]) for r in report["evaluation"]["defended"]["runs"]]
    assert views[0] == ("naive", "PGD cross-entropy on the deployed softmax (T = 1)")
    assert {v for _, v in views[1:]} == {
        "the logits divided by T = 100",
        "the logits (Carlini-Wagner margin)",
    }


def test_the_student_is_deployed_at_temperature_one(distilled):
    outcome, export = distilled
    _, (x, y) = digits_split()
    logits = OnnxRuntimeClassifier(export.onnx)(x)
    with torch.no_grad():
        assert np.abs(logits - export.module(torch.as_tensor(x)).numpy()).max() < 1e-3
    # Trained on logits / T, the deployed logits are about T times larger than a normal model's.
    ordered = np.sort(logits, axis=1)
    assert np.median(ordered[:, -1] - ordered[:, -2]) > 50
    assert outcome.report["evaluation"]["defended"]["clean_accuracy"] == pytest.approx(
        float((logits.argmax(1) == y).mean())
    )
    curve = outcome.report["training"]["curve"]
    assert len(curve) == 6 and len(outcome.report["training"]["teacher_curve"]) == 6


def test_views_keep_the_decision_and_the_margin_attack_is_untargeted(small_cnn):
    x = torch.as_tensor(digits_split()[1][0][:20])
    with torch.no_grad():
        labels = small_cnn(x).argmax(1)
        assert torch.equal(SoftmaxOutput(small_cnn)(x).argmax(1), labels)
        assert torch.equal(Tempered(small_cnn, 50.0)(x).argmax(1), labels)
        assert (margin(small_cnn(x), labels) < 0).all()
    with pytest.raises(ValueError, match="untargeted"):
        MarginPGD.configured(targeted=True)
