"""Defenses on an architecture without weights: the undefended side is a baseline the job trains with the
defense's recipe and no defense, exported and measured like the hardened model; wrappers are refused."""

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.engine.defense_helpers import evaluation_of, typed
from tests.engine.onnx_fixtures import export_onnx
from worker.engine.defense.runner import run_defense
from worker.engine.defense.spec import WeightsMissing
from worker.engine.models.intake import OnnxRuntimeClassifier
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import build_trainable

TRAIN, EVAL, EPS = 1500, 100, 0.1
RECIPE = {"epochs": 3, "batch_size": 32, "learning_rate": 0.005, "schedule": "cosine"}


def weightless(init: str) -> nn.Module:
    """A catalog small-cnn registered without weights: fresh seeded weights only, as a job builds it."""
    return build_trainable(
        architecture="small-cnn",
        onnx_bytes=None,
        safetensors_bytes=None,
        input_shape=(1, 8, 8),
        num_classes=10,
        init=init,  # type: ignore[arg-type]
        seed=0,
    )


class Exports:
    """An exporter that keeps every module it exported and the bytes, in order."""

    def __init__(self) -> None:
        self.done: list[tuple[nn.Module, bytes]] = []

    def __call__(self, module: nn.Module) -> bytes:
        onnx = export_onnx(module, (1, 8, 8))
        self.done.append((module, onnx))
        return onnx


def run_weightless(defense: dict[str, Any], digits_sets, export=None, **evaluation: Any):
    """run_defense with no uploaded model, PGD-10 at EPS on EVAL held-out digits."""
    (x_train, y_train), (x, y) = digits_sets
    attacks = evaluation.pop("attacks", [{"name": "pgd", "norm": "linf", "eps": [EPS], "steps": 10}])
    return run_defense(
        typed(defense),
        evaluation_of({"attacks": attacks, "sanity_runs": False, "monitor_samples": 50, **evaluation}),
        undefended=None,
        x=x,
        y=y,
        num_classes=10,
        trainable=weightless,
        train=(x_train, y_train),
        export=export,
    )


@pytest.fixture(scope="module")
def digits_sets(digits, held_out):
    """TRAIN training digits and EVAL held-out digits."""
    return (digits.x[:TRAIN], digits.y[:TRAIN]), (held_out[0][:EVAL], held_out[1][:EVAL])


@pytest.fixture(scope="module")
def hardened(digits_sets):
    """PGD-AT (init random) of a weightless small-cnn, every export recorded."""
    exports = Exports()
    defense = {"name": "adversarial_training", "eps": EPS, "init": "random", **RECIPE}
    return run_weightless(defense, digits_sets, export=exports), exports


@pytest.mark.slow
def test_the_undefended_side_is_the_architecture_trained_with_the_same_recipe_and_no_defense(
    hardened, digits_sets
):
    outcome, exports = hardened
    undefended = outcome.report["evaluation"]["undefended"]
    assert undefended["source"] == "trained_baseline" and "without the defense" in undefended["description"]
    training = undefended["training"]
    assert training["recipe"]["epochs"] == 3 and training["recipe"]["learning_rate"] == 0.005
    assert training["recipe"]["schedule"] == "cosine" and training["recipe"]["batch_size"] == 32
    assert [row["epoch"] for row in training["curve"]] == [1, 2, 3]
    # The baseline is exactly plain training through the fit loop: fresh weights, same recipe and seed.
    (x_train, y_train), (x, y) = digits_sets
    reference = weightless("random")
    fit(reference, x_train, y_train, recipe=TrainingRecipe(**RECIPE), seed=0)
    (baseline_module, baseline_onnx), (hardened_module, hardened_onnx) = exports.done
    with torch.no_grad():
        expected = reference(torch.as_tensor(x)).numpy()
        assert np.abs(baseline_module(torch.as_tensor(x)).numpy() - expected).max() < 1e-5
    assert outcome.model.onnx == hardened_onnx and outcome.model.module is not baseline_module


@pytest.mark.slow
def test_both_sides_are_measured_on_their_exported_models(hardened, digits_sets):
    outcome, exports = hardened
    report = outcome.report
    _, (x, y) = digits_sets
    (_, baseline_onnx), (_, hardened_onnx) = exports.done
    baseline, defended = OnnxRuntimeClassifier(baseline_onnx), OnnxRuntimeClassifier(hardened_onnx)
    evaluation = report["evaluation"]
    assert evaluation["undefended"]["clean_accuracy"] == pytest.approx(
        float((baseline(x).argmax(1) == y).mean())
    )
    assert evaluation["defended"]["clean_accuracy"] == pytest.approx(
        float((defended(x).argmax(1) == y).mean())
    )
    x_adv = outcome.arrays[next(k for k in outcome.arrays if k.startswith("undefended_"))]["x_adv"][0]
    row = evaluation["undefended"]["attacks"][0]["results"][0]
    assert row["robust_accuracy"] == pytest.approx(float((baseline(x_adv).argmax(1) == y).mean()))
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks["exported_baseline_matches_trained"] and checks["exported_model_matches_trained"]
    headline = report["headline"]
    assert headline["undefended_clean_accuracy"] >= 0.8
    assert headline["robust_accuracy"] >= headline["undefended_robust_accuracy"] + 0.08


@pytest.mark.parametrize(
    "defense",
    [
        {"name": "preprocessing", "transforms": [{"name": "jpeg"}]},
        {"name": "adversarial_training", "eps": EPS},
        {"name": "randomized_smoothing", "sigma": 0.25, "init": "pretrained"},
        {"name": "distillation", "init": "pretrained"},
        {"name": "distillation", "teacher": "upload"},
    ],
    ids=[
        "preprocessing",
        "at-pretrained",
        "smoothing-pretrained",
        "distillation-pretrained",
        "teacher-upload",
    ],
)
def test_defenses_that_need_the_weights_are_refused_before_any_training(defense, digits_sets):
    def untouchable(init: str) -> nn.Module:
        raise AssertionError("nothing may be trained")

    (x_train, y_train), (x, y) = digits_sets
    with pytest.raises(WeightsMissing, match="without weights"):
        run_defense(
            typed(defense),
            evaluation_of(None),
            undefended=None,
            x=x,
            y=y,
            num_classes=10,
            trainable=untouchable,
            train=None if defense["name"] == "preprocessing" else (x_train, y_train),
        )


@pytest.mark.slow
def test_distillation_from_scratch_trains_teacher_student_and_baseline(digits_sets):
    exports = Exports()
    defense = {"name": "distillation", "temperature": 50.0, **RECIPE}
    report = run_weightless(
        defense,
        digits_sets,
        export=exports,
        attacks=[{"name": "pgd", "norm": "linf", "eps": [0.2], "steps": 10}],
    ).report
    assert report["evaluation"]["undefended"]["source"] == "trained_baseline"
    assert len(report["training"]["teacher_curve"]) == 3 and len(report["training"]["curve"]) == 3
    assert len(exports.done) == 2
    # Nothing started from weights (weightless() refuses "pretrained"); all three models learned.
    head = report["headline"]
    assert head["undefended_clean_accuracy"] >= 0.8 and head["clean_accuracy"] >= 0.5
    assert report["training"]["teacher_curve"][-1]["clean_accuracy"] >= 0.6


@pytest.mark.slow
def test_smoothing_from_scratch_compares_against_the_plain_baseline(digits_sets):
    defense = {"name": "randomized_smoothing", "sigma": 0.25, "init": "random", "n0": 20, "n": 100, **RECIPE}
    attacks = [{"name": "pgd", "norm": "l2", "eps": [0.5], "steps": 10}]
    report = run_weightless(defense, digits_sets, export=Exports(), attacks=attacks, max_samples=50).report
    undefended = report["evaluation"]["undefended"]
    assert undefended["source"] == "trained_baseline" and undefended["clean_accuracy"] >= 0.8
    # The baseline trains without noise: its curve is the plain run's, beside the noisy one.
    assert len(undefended["training"]["curve"]) == 3 and report["certification"]["n_samples"] == 50
