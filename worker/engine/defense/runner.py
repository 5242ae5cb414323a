"""Defense jobs: harden the model, export it, and evaluate the exported model adaptively."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.defense import DefenseEvaluation, EvaluatedDefenseSpec, evaluation_attacks
from app.schemas.evasion import AttackParamsBase
from worker.engine.defense.base import DefenseContext, Init
from worker.engine.defense.evaluation import (
    Classify,
    evaluate_defense,
    module_classifier,
    plain_specs,
    predict_labels,
    run_units,
)
from worker.engine.defense.registry import build_defense
from worker.engine.defense.report import assemble_report
from worker.engine.defense.spec import SpecError, WeightsMissing
from worker.engine.evasion.attacks.registry import build_attack
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module
from worker.engine.progress import ProgressCallback, ProgressTracker


@dataclass
class HardenedModel:
    """The model a defense job hands back.

    `onnx` holds the exported weights (None for a preprocessing defense, whose model is the base graph);
    `preprocessing` the transforms a defended model runs in front of its graph (None for none).
    """

    onnx: bytes | None
    module: nn.Module
    preprocessing: list[dict[str, Any]] | None


@dataclass
class DefenseOutcome:
    """The report body, artifact arrays (one .npz each) and the hardened model."""

    report: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]
    model: HardenedModel
    images: dict[str, bytes] = field(default_factory=dict)


def _check_attacks(attacks: list[AttackParamsBase], input_range: tuple[float, float]) -> None:
    """Every attack must fit the input range."""
    for spec in attacks:
        try:
            build_attack(spec, input_range)
        except ValueError as exc:
            raise SpecError(f"evaluation: {exc}") from exc


def _check_data(
    x: np.ndarray, y: np.ndarray, sample_shape: tuple[int, ...], num_classes: int, label: str
) -> None:
    """A dataset must fit the model: sample shape and labels."""
    if tuple(x.shape[1:]) != tuple(sample_shape):
        raise SpecError(
            f"the {label} has samples of shape {list(x.shape[1:])}; the model takes {list(sample_shape)}"
        )
    if len(y) != len(x) or len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise SpecError(f"the {label} needs labels in [0, {num_classes}) for every sample")


def run_defense(
    spec: EvaluatedDefenseSpec,
    evaluation: DefenseEvaluation,
    *,
    undefended: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    trainable: Callable[[Init], nn.Module] | None = None,
    train: tuple[np.ndarray, np.ndarray] | None = None,
    undefended_classify: Classify | None = None,
    export: Callable[[nn.Module], bytes] | None = None,
    load_exported: Callable[[bytes], tuple[nn.Module, Classify]] | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> DefenseOutcome:
    """Harden `undefended` with the defense `spec`, export it, and evaluate it beside the undefended model
    as `evaluation` says (its attacks, or AutoAttack at the defense's default budget).

    `trainable(init)` gives fresh trainable copies of the model's graph; `undefended_classify` is the
    uploaded model as deployed (onnxruntime), and `export(module)` the exporter whose ONNX becomes the
    derived model (without one the trained module itself is evaluated); `load_exported(onnx)` turns those
    bytes back into the white-box module and the onnxruntime classifier on inputs in the input range
    (default: the graph as is; a model with declared normalization wraps both). Every figure of the report is
    measured on the exported model through onnxruntime (behind the real preprocessing, if any).

    `undefended` None is an architecture without weights: only a defense that trains from fresh weights
    (init "random", a trained teacher) runs on it, and WeightsMissing is raised for any other. A defense
    with init "random" trains its own undefended side (the architecture with the same recipe and seed and
    no defense), exported and measured like the hardened model; the uploaded weights are then unused.
    """
    device = device or torch.device("cpu")
    defense = build_defense(spec)
    sample_shape = tuple(int(d) for d in x.shape[1:])
    try:
        defense.validate(sample_shape, input_range)
    except ValueError as exc:
        raise SpecError(str(exc)) from exc
    attacks = evaluation_attacks(spec, evaluation, input_range)
    _check_attacks(attacks, input_range)
    _check_data(x, y, sample_shape, num_classes, "evaluation set")
    if spec.trains:
        if train is None or trainable is None:
            raise SpecError(f"{defense.name} trains a model: it needs a training set and a trainable model")
        _check_data(train[0], train[1], sample_shape, num_classes, "training set")
    x, y = x[: evaluation.max_samples], y[: evaluation.max_samples]
    monitor = (x[: evaluation.monitor_samples], y[: evaluation.monitor_samples])
    if undefended is None and spec.needs_weights:
        raise WeightsMissing(
            f"{defense.name} needs the model's weights (it wraps them, starts from them or uses them as the "
            "teacher) and the model is an architecture without weights: train it from fresh weights (init "
            "'random', teacher 'train') or upload weights"
        )
    undefended = undefended.to(device).eval() if undefended is not None else None
    context = DefenseContext(
        undefended,
        trainable,
        train,
        monitor,
        input_range,
        sample_shape,
        num_classes,
        seed,
        device,
        ProgressTracker(1.0, None),
    )
    # Planned only for its work units (the attack specs), so any module stands in for a weightless model.
    planned = defense.runs(undefended or nn.Identity(), attacks, context)
    units = defense.training_units(len(train[0]) if train is not None else 0) + run_units(
        planned, attacks, len(x), input_range, evaluation.sanity_runs
    )
    units += defense.certification_units(len(x))
    context.tracker = tracker = ProgressTracker(units, progress)
    hardened = defense.harden(context)
    load = load_exported or _load_exported
    export_checks: list[dict[str, Any]] = []
    if hardened.baseline is not None:
        reference, reference_classify, baseline_check = _deployed_baseline(
            hardened.baseline.model, export, load, x, device
        )
        export_checks += [baseline_check] if baseline_check else []
    else:
        assert undefended is not None  # run_defense refused a weightless model above
        reference = undefended
        reference_classify = undefended_classify or module_classifier(undefended, device)
    if hardened.trained and export is not None:
        onnx = export(hardened.model)
        final, final_classify = load(onnx)
        final = final.to(device).eval()
        export_checks.append(_export_check(hardened.model, final_classify, x, device))
    elif hardened.trained:
        onnx, final = None, hardened.model
        final_classify: Classify = module_classifier(final, device)
    else:
        onnx, final = None, reference
        final_classify = reference_classify
    deployed = defense.deployed(final_classify, context)
    section, arrays = evaluate_defense(
        undefended=reference,
        undefended_classify=reference_classify,
        undefended_black_box=QueryOnlyModel(reference_classify),
        runs=defense.runs(final, attacks, context),
        sanity_runs=evaluation.sanity_runs,
        deployed_classify=deployed,
        attacks=attacks,
        x=x,
        y=y,
        input_range=input_range,
        seed=seed,
        device=device,
        batch_size=evaluation.batch_size,
        tracker=tracker,
    )
    inspection = defense.inspect(final, x, y, context)
    report = assemble_report(
        defense=defense.describe(),
        evaluation=section,
        attacks=plain_specs(attacks),
        hardened=hardened,
        inspection=inspection,
        export_checks=export_checks,
        headline_eps=spec.headline_eps(),
        baseline=hardened.baseline.training if hardened.baseline is not None else None,
        max_samples=evaluation.max_samples,
    )
    return DefenseOutcome(
        report, {**arrays, **inspection.arrays}, HardenedModel(onnx, final, hardened.preprocessing)
    )


def _load_exported(onnx: bytes) -> tuple[nn.Module, Classify]:
    """The exported graph as a white-box module and through onnxruntime."""
    return load_onnx_module(onnx), OnnxRuntimeClassifier(onnx)


def _deployed_baseline(
    baseline: nn.Module,
    export: Callable[[nn.Module], bytes] | None,
    load: Callable[[bytes], tuple[nn.Module, Classify]],
    x: np.ndarray,
    device: torch.device,
) -> tuple[nn.Module, Classify, dict[str, Any] | None]:
    """The trained baseline as the evaluation attacks and measures it: exported and loaded back like the
    hardened model (without an exporter, the module itself), and the check that the export agrees."""
    if export is None:
        return baseline, module_classifier(baseline, device), None
    module, classify = load(export(baseline))
    check = _export_check(baseline, classify, x, device, name="exported_baseline_matches_trained")
    return module.to(device).eval(), classify, check


def _export_check(
    trained: nn.Module,
    exported: Classify,
    x: np.ndarray,
    device: torch.device,
    name: str = "exported_model_matches_trained",
) -> dict[str, Any]:
    """The exported ONNX (onnxruntime) must predict what the trained module predicts."""
    expected = predict_labels(module_classifier(trained, device), x)
    got = predict_labels(exported, x)
    logits_trained = module_classifier(trained, device)(x[:256])
    diff = float(np.abs(np.asarray(exported(x[:256])) - logits_trained).max())
    agree = int((expected == got).sum())
    return {
        "name": name,
        "passed": agree == len(x),
        "detail": f"onnxruntime on the exported ONNX agrees with the trained module on {agree} of {len(x)} "
        f"evaluation samples (max logit difference {diff:.3g})",
    }
