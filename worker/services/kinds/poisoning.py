"""The poisoning executor: plant poisons, train and measure the victims, detect; or audit a training set."""

from dataclasses import asdict
from typing import Any

import numpy as np

from worker.engine.models.export import ExportError, export_onnx
from worker.engine.poisoning.audit import run_poisoning_audit
from worker.engine.poisoning.runner import PoisoningOutcome, run_poisoning
from worker.engine.poisoning.validate import PoisoningInputError
from worker.engine.training.recipe import TrainingRecipe
from worker.services.context import JobContext
from worker.services.job_state import JobFailure
from worker.services.outputs import DerivedModel, JobOutput, finish_output, npz_artifact, png_artifact

THREAT_MODEL = {
    "attacker": "controls a share of the training set: adds triggers, perturbs inputs within eps, and for "
    "dirty-label attacks changes labels (clean-label attacks never do)",
    "victim": "trains the model's architecture on the poisoned set with the job's recipe",
    "defender": "holds the training set and the trained model (activations, outputs) and clean held-out data",
}
AUDIT_THREAT_MODEL = {
    "defender": "holds its own trained model and training set and clean held-out data; looks for poison",
}


def _training_set(ctx: JobContext) -> Any:
    """The loaded training set."""
    if "train_dataset_id" not in ctx.datasets:
        raise JobFailure(
            "dataset_not_found", f"training set {ctx.params['train_dataset_id']} could not be loaded"
        )
    return ctx.datasets["train_dataset_id"]


def _pattern(ctx: JobContext) -> np.ndarray | None:
    """x[0] of the uploaded pattern dataset, when the spec names one."""
    if ctx.params.get("pattern_dataset_id") is None:
        return None
    data = ctx.datasets.get("pattern_dataset_id")
    if data is None or len(data.x) == 0:
        raise JobFailure("pattern_invalid", "the uploaded pattern could not be loaded")
    return data.x[0]


def _artifacts(outcome: PoisoningOutcome) -> list[Any]:
    """Poisoned training sets and suspect indices (.npz), triggers (PNG)."""
    files = []
    for name, arrays in outcome.arrays.items():
        kind = "poisoned_dataset" if name.startswith("poisoned_") else "suspected_indices"
        files.append(npz_artifact(kind, name, arrays))
    files += [png_artifact("trigger_image", name, png) for name, png in outcome.images.items()]
    return files


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """Clean baseline, and per attack its success rate and clean accuracy at each rate."""
    return {
        "baseline_clean_accuracy": report["baseline"]["clean_accuracy"],
        "attacks": [
            {
                "name": attack["name"],
                "rates": [row["rate"] for row in attack["results"]],
                "attack_success_rate": [row["attack_success_rate"] for row in attack["results"]],
                "clean_accuracy": [row["clean_accuracy"] for row in attack["results"]],
            }
            for attack in report["attacks"]
        ],
        "checks_passed": all(check["passed"] for check in report["checks"]),
    }


def _audit(ctx: JobContext) -> JobOutput:
    """Detection only, on the tenant's own trained model (its ONNX graph, or a catalog module exported)."""
    model = ctx.model
    if model.format == "remote" or model.blob is None:
        raise JobFailure("audit_needs_activations", f"model {model.id} exposes no activations to audit")
    onnx = (
        model.blob
        if model.format == "onnx"
        else export_onnx(model.graph_module(), input_shape=model.input_shape)
    )
    outcome, summary = run_poisoning_audit(
        onnx,
        _training_set(ctx),
        ctx.data,
        ctx.params["detection"],
        input_shape=model.input_shape,
        num_classes=model.num_classes,
        input_range=model.input_range,
        normalization=model.normalization,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    body = dict(outcome.report)
    checks = body.pop("checks")
    return finish_output(
        ctx, body, summary, threat_model=AUDIT_THREAT_MODEL, checks=checks, artifacts=_artifacts(outcome)
    )


def _attack(ctx: JobContext) -> JobOutput:
    """Baseline, every attack at every rate, detection; each attack's largest-rate victim registered."""
    model, params = ctx.model, ctx.params
    training = dict(params["training"])
    init = training.pop("init")
    if init == "pretrained" and not model.has_weights:
        raise JobFailure("model_untrained", f"model {model.id} has no weights to start from")
    outcome = run_poisoning(
        lambda seed: model.trainable(init, seed),
        _training_set(ctx),
        ctx.data,
        params["attacks"],
        recipe=TrainingRecipe.from_spec(training),
        input_shape=model.input_shape,
        num_classes=model.num_classes,
        input_range=model.input_range,
        detection=params["detection"],
        retrain_after_removal=bool(params["retrain_after_removal"]),
        normalization=model.normalization,
        pattern=_pattern(ctx),
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
    )
    body = dict(outcome.report)
    checks = body.pop("checks")
    derived = [
        DerivedModel(
            name=f"poisoned victim of {model.name}: {victim.attack} at rate {victim.rate:g}",
            onnx=victim.onnx,
            intake=asdict(victim.intake),
            white_box=bool(victim.intake.white_box),
            input_shape=model.input_shape,
            num_classes=model.num_classes,
            input_range=model.input_range,
            derived_from=model.id,
            role="poisoned_victim",
            normalization=model.normalization,
        )
        for victim in outcome.victims
    ]
    summary = _summary(outcome.report)
    return finish_output(
        ctx,
        body,
        summary,
        threat_model=THREAT_MODEL,
        checks=checks,
        artifacts=_artifacts(outcome),
        derived_models=derived,
    )


def execute(ctx: JobContext) -> JobOutput:
    """Attack mode with attacks, audit mode without; bad input found at run time fails with its code."""
    try:
        return _attack(ctx) if ctx.params.get("attacks") else _audit(ctx)
    except PoisoningInputError as exc:
        raise JobFailure(exc.code, str(exc)) from exc
    except ExportError as exc:
        raise JobFailure("export_failed", f"a poisoned victim could not be exported: {exc}") from exc
    except ValueError as exc:
        raise JobFailure("poisoning_invalid", str(exc)) from exc
