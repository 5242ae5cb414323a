"""Adversarial training (PGD, TRADES, fast): robustness gained, the overfitting guard, the exported ONNX."""

import numpy as np
import pytest
import torch

from tests.engine.defense_helpers import RecordingExport, check, digits_split, pgd, run, worst
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.models.intake import OnnxRuntimeClassifier

EPS = 0.1


@pytest.fixture(scope="module")
def pgd_training(small_cnn):
    """PGD-AT at eps 0.1 for 4 epochs, exported through a recording exporter."""
    export = RecordingExport()
    outcome = run(
        {"name": "adversarial_training", "method": "pgd", "eps": EPS, "epochs": 4},
        pgd([EPS]),
        small_cnn,
        export=export,
    )
    return outcome, export


def test_pgd_training_raises_robust_accuracy_over_the_undefended_model(pgd_training):
    report = pgd_training[0].report
    headline = report["headline"]
    assert headline["eps"] == EPS
    assert headline["robust_accuracy"] >= headline["undefended_robust_accuracy"] + 0.08
    assert headline["clean_accuracy"] >= 0.85
    assert headline["robust_accuracy"] == worst(report, "all", EPS)
    curve = report["training"]["curve"]
    assert [row["epoch"] for row in curve] == [1, 2, 3, 4]
    assert all({"loss", "clean_accuracy", "robust_accuracy"} <= set(row) for row in curve)


def test_exported_onnx_matches_the_trained_module_and_gives_the_reported_numbers(pgd_training):
    outcome, export = pgd_training
    assert outcome.model.onnx == export.onnx and outcome.model.preprocessing is None
    _, (x, y) = digits_split()
    session = OnnxRuntimeClassifier(export.onnx)
    with torch.no_grad():
        trained = export.module(torch.as_tensor(x)).numpy()
    assert np.abs(session(x) - trained).max() < 1e-4
    assert check(outcome.report, "exported_model_matches_trained")["passed"]
    defended = outcome.report["evaluation"]["defended"]
    assert defended["clean_accuracy"] == pytest.approx(float((session(x).argmax(1) == y).mean()))
    (name,) = [key for key in outcome.arrays if key.startswith("defended_adaptive")]
    arrays = outcome.arrays[name]
    assert np.array_equal(arrays["y"], y)
    x_adv = arrays["x_adv"][0]
    assert float(perturbation_norm(torch.as_tensor(x_adv - x), "linf").max()) <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    row = defended["runs"][0]["attacks"][0]["results"][0]
    assert row["robust_accuracy"] == pytest.approx(float((session(x_adv).argmax(1) == y).mean()))


def test_trades_raises_robust_accuracy(small_cnn):
    report = run(
        {"name": "adversarial_training", "method": "trades", "eps": EPS, "beta": 6.0, "epochs": 2},
        pgd([EPS]),
        small_cnn,
    ).report
    assert report["defense"]["beta"] == 6.0
    assert report["headline"]["robust_accuracy"] >= report["headline"]["undefended_robust_accuracy"] + 0.05


def test_overfitting_guard_fires_on_fast_training_at_a_large_eps_and_keeps_the_best_epoch(small_cnn):
    report = run(
        {"name": "adversarial_training", "method": "fast", "eps": 0.3, "epochs": 8, "learning_rate": 0.005},
        pgd([0.3], steps=10),
        small_cnn,
    ).report
    training = report["training"]
    guard = training["guard"]
    assert guard["fired"] and guard["fired_at"]["epoch"] < 8
    assert training["epochs_run"] == guard["fired_at"]["epoch"] and training["stopped_early"]
    fired = guard["fired_at"]
    collapsed = fired["guard_pgd_accuracy"] < 0.25 * fired["training_attack_accuracy"] and (
        fired["training_attack_accuracy"] - fired["start_training_attack_accuracy"] >= 0.2
    )
    assert collapsed or fired["best_guard_pgd_accuracy"] - fired["guard_pgd_accuracy"] > 0.2
    assert guard["training_attack_accuracy_at_start"] == fired["start_training_attack_accuracy"]
    before = [row for row in training["curve"] if row["epoch"] < fired["epoch"]]
    best = max(before, key=lambda row: row["guard_pgd_accuracy"])
    assert guard["kept_epoch"] == best["epoch"]
    assert not check(report, "no_catastrophic_overfitting")["passed"]


def test_overfitting_guard_ignores_the_gap_an_untrained_model_starts_with(small_cnn):
    """One small FGSM step is far weaker than PGD on any model: only a gain under it is overfitting."""
    from worker.engine.defense.adversarial_losses import Budget
    from worker.engine.defense.monitor import GUARD_METRIC, TRAINING_ATTACK_METRIC, EpochMonitor

    (x_train, y_train), (x, y) = digits_split()
    monitor = EpochMonitor(
        x[:64],
        y[:64],
        budget=Budget(0.2, "linf", 1, 0.15, True, (0.0, 1.0)),
        device=torch.device("cpu"),
        seed=0,
    )
    monitor.guard_x, monitor.guard_y = x_train[:256], y_train[:256]
    start = monitor.measure_start(small_cnn.eval())
    for epoch in (1, 2, 3):  # the model never changes, as in a cyclic schedule's first steps
        metrics = monitor(epoch, small_cnn)
        assert (
            metrics[TRAINING_ATTACK_METRIC] >= 0.25
            and metrics[GUARD_METRIC] < 0.25 * metrics[TRAINING_ATTACK_METRIC]
        )
        assert abs(metrics[TRAINING_ATTACK_METRIC] - start) < 0.2
    assert monitor.fired is None


def test_overfitting_guard_stays_quiet_on_healthy_fast_training(small_cnn):
    report = run(
        {"name": "adversarial_training", "method": "fast", "eps": EPS, "epochs": 2},
        pgd([EPS], steps=10),
        small_cnn,
    ).report
    assert not report["training"]["guard"]["fired"] and report["training"]["epochs_run"] == 2
    assert check(report, "no_catastrophic_overfitting")["passed"]
    assert report["training"]["budget"]["step_size"] == pytest.approx(1.25 * EPS)
    assert report["headline"]["robust_accuracy"] > report["headline"]["undefended_robust_accuracy"]


def test_report_is_json_and_renders_curves_and_robustness_for_people(pgd_training):
    import json

    from worker.engine.reports.defense import render_defense_sections

    report = json.loads(json.dumps(pgd_training[0].report))
    html = render_defense_sections(report)
    for text in ("Robust accuracy against eps", "Training", "Accuracy per epoch", "adaptive", "<svg"):
        assert text in html
    assert html.count("<svg") >= 3  # robustness, accuracy per epoch, loss per epoch
