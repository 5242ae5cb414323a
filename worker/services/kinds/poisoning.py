"""The poisoning executor: plant poisons, train and measure the victims, detect; or audit a training set."""

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np

from app.schemas.poisoning import PoisoningJobSpec
from worker.engine.datasets import ArrayDataset
from worker.engine.models.export import ExportError, export_onnx
from worker.engine.poisoning.audit import run_poisoning_audit
from worker.engine.poisoning.runner import PoisoningOutcome, run_poisoning
from worker.engine.poisoning.scan.run import run_scan
from worker.engine.poisoning.validate import PoisoningInputError
from worker.engine.training.recipe import TrainingRecipe
from worker.services.context import JobData, RunEnv
from worker.services.job_state import JobFailure
from worker.services.outputs import ArtifactPayload, DerivedModel, Outcome, npz_artifact, png_artifact
from worker.services.targets import Target

T = TypeVar("T")

THREAT_MODEL = {
    "attacker": "controls a share of the training set: adds triggers, perturbs inputs within eps, and for "
    "dirty-label attacks changes labels (clean-label attacks never do)",
    "victim": "trains the model's architecture on the poisoned set with the job's recipe",
    "defender": "holds the training set and the trained model (activations, outputs) and clean held-out data",
}
SCAN_THREAT_MODEL = {
    "attacker": "may have planted a backdoor (a trigger sending inputs to one class) before the model was "
    "handed over",
    "defender": "holds the trained model (white-box scanners: its gradients; black-box: its scores) and a "
    "small clean held-out set, never the training data",
}
AUDIT_THREAT_MODEL = {
    "defender": "holds its own trained model and training set and clean held-out data; looks for poison",
}


def _training_set(spec: PoisoningJobSpec, data: JobData) -> ArrayDataset:
    """The loaded training set."""
    train_id = spec.params.train_dataset_id
    if train_id is None:
        raise JobFailure("poisoning_invalid", "this mode needs params.train_dataset_id")
    return data.require("train_dataset_id", train_id, "training set")


def _scan(spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Scan the model under test for a backdoor on the clean held-out set; triggers as .npz and PNG."""
    signature = target.signature
    classify = target.classifier()
    if classify is None:
        raise JobFailure("needs_white_box", f"model {target.id} gives no predictions to scan")
    outcome = run_scan(
        list(spec.params.scan),
        module=target.differentiable() if target.has_weights else None,
        classify=classify,
        x=data.held_out.x,
        y=data.held_out.y,
        num_classes=signature.num_classes,
        input_range=signature.input_range,
        seed=env.seed,
        progress=env.progress,
    )
    body = dict(outcome.report)
    checks = body.pop("checks")
    files = [npz_artifact("reversed_trigger", name, arrays) for name, arrays in outcome.arrays.items()]
    files += [png_artifact("trigger_image", name, png) for name, png in outcome.images.items()]
    summary = {"suspected_classes": body["suspected_classes"], "verdict": body["verdict"]}
    return Outcome(body, checks, summary, SCAN_THREAT_MODEL, files)


def _pattern(spec: PoisoningJobSpec, data: JobData) -> np.ndarray | None:
    """x[0] of the uploaded pattern dataset, when the spec names one."""
    if spec.params.pattern_dataset_id is None:
        return None
    pattern = data.get("pattern_dataset_id")
    if pattern is None or len(pattern.x) == 0:
        raise JobFailure("pattern_invalid", "the uploaded pattern could not be loaded")
    first: np.ndarray = pattern.x[0]
    return first


def _artifacts(outcome: PoisoningOutcome) -> list[ArtifactPayload]:
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


def _own_graph(target: Target) -> bytes:
    """The tenant's trained model as ONNX: the uploaded graph, or a catalog module exported."""
    uploaded = target.onnx_bytes()
    if uploaded is not None:
        return uploaded
    if not (target.white_box and target.has_weights):
        raise JobFailure("audit_needs_activations", f"model {target.id} exposes no activations to audit")
    return export_onnx(target.graph_module(), input_shape=target.signature.input_shape)


def _audit(spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Detection only, on the tenant's own trained model (its ONNX graph, or a catalog module exported)."""
    signature = target.signature
    outcome, summary = run_poisoning_audit(
        _own_graph(target),
        _training_set(spec, data),
        data.held_out,
        spec.params.detection,
        input_shape=signature.input_shape,
        num_classes=signature.num_classes,
        input_range=signature.input_range,
        normalization=signature.normalization,
        seed=env.seed,
        progress=env.progress,
    )
    body = dict(outcome.report)
    checks = body.pop("checks")
    return Outcome(body, checks, summary, AUDIT_THREAT_MODEL, _artifacts(outcome))


def run_attack_mode(
    spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv, **split: Any
) -> PoisoningOutcome:
    """Baseline, every attack at every rate, detection (`split`: a shard's `only` or the merge's `done`)."""
    params, signature = spec.params, target.signature
    training = params.training.model_dump(mode="json")
    init = training.pop("init")
    if init == "pretrained" and not target.has_weights:
        raise JobFailure("model_untrained", f"model {target.id} has no weights to start from")
    return run_poisoning(
        lambda seed: target.trainable(init, seed),
        _training_set(spec, data),
        data.held_out,
        params.attacks,
        recipe=TrainingRecipe.from_spec(training),
        input_shape=signature.input_shape,
        num_classes=signature.num_classes,
        input_range=signature.input_range,
        detection=params.detection,
        retrain_after_removal=params.retrain_after_removal,
        repair=params.repair,
        normalization=signature.normalization,
        pattern=_pattern(spec, data),
        seed=env.seed,
        device=env.device,
        progress=env.progress,
        **split,
    )


def attack_outcome(target: Target, outcome: PoisoningOutcome) -> Outcome:
    """The job's outcome of an attack-mode run; each attack's largest-rate victim registered."""
    signature = target.signature
    body = dict(outcome.report)
    checks = body.pop("checks")
    derived = [
        DerivedModel(
            name=f"poisoned victim of {target.name}: {victim.attack} at rate {victim.rate:g}",
            onnx=victim.onnx,
            intake=asdict(victim.intake),
            white_box=bool(victim.intake.white_box),
            input_shape=signature.input_shape,
            num_classes=signature.num_classes,
            input_range=signature.input_range,
            derived_from=target.id,
            role="poisoned_victim",
            normalization=signature.normalization,
        )
        for victim in outcome.victims
    ]
    return Outcome(body, checks, _summary(outcome.report), THREAT_MODEL, _artifacts(outcome), derived)


def _attack(spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Attack mode in one piece."""
    return attack_outcome(target, run_attack_mode(spec, target, data, env))


def engine_failures(work: Callable[[], T]) -> T:
    """Run poisoning work; bad input found at run time fails with its code."""
    try:
        return work()
    except PoisoningInputError as exc:
        raise JobFailure(exc.code, str(exc)) from exc
    except ExportError as exc:
        raise JobFailure("export_failed", f"a poisoned victim could not be exported: {exc}") from exc
    except ValueError as exc:
        raise JobFailure("poisoning_invalid", str(exc)) from exc


def run(spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Attack mode with attacks, audit mode without, or a scan."""
    mode = _scan if spec.params.scan else _attack if spec.params.attacks else _audit
    return engine_failures(lambda: mode(spec, target, data, env))
