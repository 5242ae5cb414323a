"""Defense jobs: harden the model, export it, and evaluate the exported model adaptively."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from app.schemas.defense import DefenseEvaluation, EvaluatedDefenseSpec, evaluation_attacks
from app.schemas.evasion import AttackParamsBase
from worker.engine.defense.base import Defense, DefenseContext, Hardened, Init
from worker.engine.defense.evaluation import (
    Classify,
    DefenseSlice,
    EvaluationPlan,
    evaluate_defense_slice,
    finish_defense,
    module_classifier,
    plain_specs,
    run_units,
)
from worker.engine.defense.job_checks import (
    check_attacks,
    check_data,
    default_load,
    deployed_baseline,
    export_check,
)
from worker.engine.defense.preprocessing.pipeline import SEARCH_STREAM
from worker.engine.defense.registry import build_defense
from worker.engine.defense.report import assemble_report
from worker.engine.defense.spec import SpecError, WeightsMissing
from worker.engine.models.black_box import QueryOnlyModel
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


@dataclass
class PreparedDefense:
    """A checked, hardened and exported defense job: what its evaluation slices and its finish need.

    `undefended` and `final` are (white-box module, deployed classifier) of each side; `x`, `y` the
    evaluated samples (max_samples applied); `context.tracker` carries the job's progress.
    """

    spec: EvaluatedDefenseSpec
    defense: Defense[Any]
    context: DefenseContext
    attacks: list[AttackParamsBase]
    evaluation: DefenseEvaluation
    x: np.ndarray
    y: np.ndarray
    hardened: Hardened
    undefended: tuple[nn.Module, Classify]
    final: tuple[nn.Module, Classify]
    onnx: bytes | None
    export_checks: list[dict[str, Any]]


def prepare_defense(
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
    count_evaluation: bool = True,
) -> PreparedDefense:
    """Check the job, harden `undefended` with the defense `spec` and export it: everything the evaluation
    (`defense_plan`, then slices and `finish_defense_run`) needs. Arguments as run_defense.

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

    `count_evaluation` False weighs progress by the hardening alone (it goes from 0 to 1 over the training),
    for a job whose evaluation runs elsewhere (in shards, each counting its own slice).
    """
    device = device or torch.device("cpu")
    defense = build_defense(spec)
    sample_shape = tuple(int(d) for d in x.shape[1:])
    try:
        defense.validate(sample_shape, input_range)
    except ValueError as exc:
        raise SpecError(str(exc)) from exc
    attacks = evaluation_attacks(spec, evaluation, input_range)
    check_attacks(attacks, input_range)
    check_data(x, y, sample_shape, num_classes, "evaluation set")
    if spec.trains:
        if train is None or trainable is None:
            raise SpecError(f"{defense.name} trains a model: it needs a training set and a trainable model")
        check_data(train[0], train[1], sample_shape, num_classes, "training set")
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
    units = defense.training_units(len(train[0]) if train is not None else 0)
    if count_evaluation:
        units += run_units(planned, attacks, len(x), evaluation.sanity_runs)
        units += defense.certification_units(len(x))
    context.tracker = ProgressTracker(units, progress)
    hardened = defense.harden(context)
    load = load_exported or default_load
    export_checks: list[dict[str, Any]] = []
    if hardened.baseline is not None:
        reference, reference_classify, baseline_check = deployed_baseline(
            hardened.baseline.model, export, load, x, device
        )
        export_checks += [baseline_check] if baseline_check else []
    else:
        assert undefended is not None  # run_defense refused a weightless model above
        reference = undefended
        reference_classify = undefended_classify or module_classifier(undefended, device)
    final_classify: Classify
    if hardened.trained and export is not None:
        onnx = export(hardened.model)
        final, final_classify = load(onnx)
        final = final.to(device).eval()
        export_checks.append(export_check(hardened.model, final_classify, x, device))
    elif hardened.trained:
        onnx, final = None, hardened.model
        final_classify = module_classifier(final, device)
    else:
        onnx, final = None, reference
        final_classify = reference_classify
    return PreparedDefense(
        spec, defense, context, attacks, evaluation, x, y, hardened, (reference, reference_classify),
        (final, final_classify), onnx, export_checks,
    )  # fmt: skip


def defense_plan(prepared: PreparedDefense) -> EvaluationPlan:
    """What the evaluation attacks and judges: the undefended side, the defense's runs on the final model
    and the deployed classifier (as judge, and drawing apart for black-box search)."""
    (reference, reference_classify), (final, final_classify) = prepared.undefended, prepared.final
    defense, context = prepared.defense, prepared.context
    return EvaluationPlan(
        undefended=reference,
        undefended_classify=reference_classify,
        undefended_black_box=QueryOnlyModel(reference_classify),
        runs=defense.runs(final, prepared.attacks, context),
        deployed=defense.deployed(final_classify, context),
        attacks=prepared.attacks,
        input_range=context.input_range,
        seed=context.seed,
        device=context.device,
        batch_size=prepared.evaluation.batch_size,
        sanity_runs=prepared.evaluation.sanity_runs,
        deployed_search=defense.deployed(final_classify, context, stream=SEARCH_STREAM),
    )


def slice_units(plan: EvaluationPlan, n: int) -> float:
    """Work units of evaluate_defense_slice on n samples (every side's attacks; no sanity runs)."""
    return run_units(plan.runs, plan.attacks, n, False)


def finish_units(prepared: PreparedDefense, plan: EvaluationPlan) -> float:
    """Work units of finish_defense_run: the sanity runs and the defense's certification (no training)."""
    n = len(prepared.x)
    sanity = run_units(plan.runs, plan.attacks, n, plan.sanity_runs) - slice_units(plan, n)
    return sanity + prepared.defense.certification_units(n)


def finish_defense_run(
    prepared: PreparedDefense, plan: EvaluationPlan, parts: Sequence[DefenseSlice]
) -> DefenseOutcome:
    """The outcome from the evaluation's slices (any split, any order): the section, the defense's own
    measurements (certificates, saturation) and the report."""
    x, y, tracker = prepared.x, prepared.y, prepared.context.tracker
    section, arrays = finish_defense(plan, x, y, parts, tracker)
    inspection = prepared.defense.inspect(prepared.final[0], x, y, prepared.context)
    hardened = prepared.hardened
    report = assemble_report(
        defense=prepared.defense.describe(),
        evaluation=section,
        attacks=plain_specs(prepared.attacks),
        hardened=hardened,
        inspection=inspection,
        export_checks=prepared.export_checks,
        headline_eps=prepared.spec.headline_eps(),
        baseline=hardened.baseline.training if hardened.baseline is not None else None,
        max_samples=prepared.evaluation.max_samples,
    )
    model = HardenedModel(prepared.onnx, prepared.final[0], hardened.preprocessing)
    return DefenseOutcome(report, {**arrays, **inspection.arrays}, model)


class DefenseInputs(TypedDict):
    """What run_defense hands to prepare_defense: the model, the data and the run's settings (see there)."""

    undefended: nn.Module | None
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    trainable: NotRequired[Callable[[Init], nn.Module] | None]
    train: NotRequired[tuple[np.ndarray, np.ndarray] | None]
    undefended_classify: NotRequired[Classify | None]
    export: NotRequired[Callable[[nn.Module], bytes] | None]
    load_exported: NotRequired[Callable[[bytes], tuple[nn.Module, Classify]] | None]
    input_range: NotRequired[tuple[float, float]]
    seed: NotRequired[int]
    device: NotRequired[torch.device | None]
    progress: NotRequired[ProgressCallback | None]


def run_defense(
    spec: EvaluatedDefenseSpec, evaluation: DefenseEvaluation, **inputs: Unpack[DefenseInputs]
) -> DefenseOutcome:
    """Harden `undefended` with the defense `spec`, export it, and evaluate it beside the undefended model
    as `evaluation` says (its attacks, or AutoAttack at the defense's default budget); `inputs` as
    prepare_defense takes them. The evaluation is one slice over all samples; a sharded run calls
    evaluate_defense_slice per slice."""
    prepared = prepare_defense(spec, evaluation, **inputs)
    plan = defense_plan(prepared)
    x, y, tracker = prepared.x, prepared.y, prepared.context.tracker
    part = evaluate_defense_slice(plan, x, y, start=0, total=len(x), tracker=tracker)
    return finish_defense_run(prepared, plan, [part])
