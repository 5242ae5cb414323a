"""The backdoor repair executor (a defense job, defense.name backdoor_repair): scan, repair, export, measure
the exported model against the uploaded one, register it as a derived model (role repaired_model)."""

from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
from torch import nn

from app.schemas.defense import DefenseJobSpec
from app.schemas.repair import BackdoorRepairParams, PatchTriggerSpec
from worker.engine.defense.repair.base import RepairContext
from worker.engine.defense.repair.registry import build_repair
from worker.engine.defense.repair.runner import RealTrigger, RepairOutcome, progress_units, run_repair
from worker.engine.models.export import ExportError
from worker.engine.models.intake import IntakeReport
from worker.engine.poisoning.attacks.triggers import PatchTrigger, Trigger, blend_trigger, noise_pattern
from worker.engine.poisoning.scan.base import Classify
from worker.engine.poisoning.scan.neural_cleanse import neural_cleanse
from worker.engine.progress import ProgressTracker
from worker.engine.reports.png import chw_to_png
from worker.engine.training.trainable import trainable_from_onnx
from worker.services.context import JobData, RunEnv
from worker.services.job_state import JobFailure
from worker.services.outputs import DerivedModel, Outcome, npz_artifact, png_artifact
from worker.services.targets import Target

THREAT_MODEL = {
    "attacker": "planted a backdoor (a trigger that sends inputs to one class) before the model was handed "
    "over, and stamps it on inputs at test time",
    "defender": "holds the trained model (graph and weights) and a small clean labelled set, never the "
    "poisoned training data; knows the trigger only when the job supplies it",
}
# Clean accuracy may fall at most this much for the repair to count as keeping it (the target).
ACCURACY_TOLERANCE = 0.02


class Graph(Protocol):
    """What the defense executor's graph helper gives a repair: the uploaded graph, export and load."""

    def base_graph(self) -> tuple[bytes, IntakeReport]: ...
    def export(self, module: nn.Module) -> bytes: ...
    def intake(self, onnx: bytes) -> IntakeReport: ...
    def load(self, onnx: bytes) -> tuple[nn.Module, Classify]: ...


def real_trigger(repair: BackdoorRepairParams, target: Target) -> RealTrigger | None:
    """The planted trigger the user supplied, built for the model's inputs."""
    if repair.trigger is None or repair.target_class is None:
        return None
    shape, input_range = tuple(target.signature.input_shape), target.signature.input_range
    trigger: Trigger
    if isinstance(repair.trigger, PatchTriggerSpec):
        spec = repair.trigger.model_dump(mode="json", exclude={"name"})
        trigger = PatchTrigger.from_spec(spec).build(shape, input_range)
    else:
        pattern = noise_pattern(shape, input_range, repair.trigger.pattern_seed)
        trigger = blend_trigger(pattern, repair.trigger.alpha)
    return RealTrigger(trigger, int(repair.target_class))


def _checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Sanity checks of the measurements: clean accuracy kept, the figures measured on the export."""
    before, after = report["before"]["clean_accuracy"], report["after"]["clean_accuracy"]
    kept = after >= before - ACCURACY_TOLERANCE
    return [
        {
            "name": "clean_accuracy_kept",
            "passed": bool(kept),
            "detail": ""
            if kept
            else f"clean accuracy fell from {before:.3f} to {after:.3f} (more than "
            f"{ACCURACY_TOLERANCE:g}); give a larger clean set, fewer epochs or a smaller learning rate",
        }
    ]


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The method, clean accuracy and attack success before and after."""
    before, after = report["before"], report["after"]
    key = "real_trigger_success" if "real_trigger_success" in after else None
    return {
        "method": report["method"]["name"],
        "clean_accuracy": [before["clean_accuracy"], after["clean_accuracy"]],
        "attack_success_rate": [before[key], after[key]] if key else None,
        "flagged_after": report["scan_after"]["flagged"],
    }


def _artifacts(outcome: RepairOutcome, input_range: tuple[float, float]) -> list[Any]:
    """The reversed triggers (mask and pattern .npz, a picture each)."""
    files: list[Any] = []
    for label, trigger in outcome.triggers.items():
        name = f"neural_cleanse_class_{label}"
        files.append(
            npz_artifact("reversed_trigger", name, {"mask": trigger.mask, "pattern": trigger.pattern})
        )
        files.append(png_artifact("trigger_image", name, chw_to_png(trigger.image(input_range), input_range)))
    return files


def run_backdoor_repair(
    spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv, graph: Graph
) -> Outcome:
    """Repair the model on the clean set, measure on the held-out set, register the repaired model."""
    params, repair = spec.params, spec.params.defense
    assert isinstance(repair, BackdoorRepairParams)
    if not target.has_weights:
        raise JobFailure("model_untrained", f"model {target.id} has no weights to repair")
    if params.train_dataset_id is None:
        raise JobFailure("defense_invalid", "backdoor_repair needs params.train_dataset_id (the clean set)")
    clean = data.require("train_dataset_id", params.train_dataset_id, "clean set")
    original = target.classifier()
    if original is None:
        raise JobFailure("needs_white_box", f"model {target.id} gives no predictions to measure")
    signature = target.signature
    try:
        method = build_repair(repair.method_spec())
        base, _ = graph.base_graph()
        scanner = neural_cleanse(repair.scan_steps)
        tracker = ProgressTracker(progress_units(method, scanner, len(clean.x)), env.progress)
        module = trainable_from_onnx(base, init="pretrained")
        module.to(env.device)
        context = RepairContext(
            module,
            np.asarray(clean.x, dtype=np.float32),
            np.asarray(clean.y, dtype=np.int64),
            signature.num_classes,
            signature.input_range,
            normalization=signature.normalization,
            seed=env.seed,
            device=env.device,
            progress=tracker,
        )
        outcome = run_repair(
            method,
            context,
            held_out=(data.held_out.x, data.held_out.y),
            original=original,
            export=graph.export,
            load=graph.load,
            scanner=scanner,
            real=real_trigger(repair, target),
        )
    except ExportError as exc:
        raise JobFailure("export_failed", f"the repaired model could not be exported: {exc}") from exc
    except ValueError as exc:
        raise JobFailure("defense_invalid", str(exc)) from exc
    intake = graph.intake(outcome.onnx)
    derived = DerivedModel(
        name=f"{repair.method} repair of {target.name}",
        onnx=outcome.onnx,
        intake=asdict(intake),
        white_box=bool(intake.white_box),
        input_shape=signature.input_shape,
        num_classes=signature.num_classes,
        input_range=signature.input_range,
        derived_from=target.id,
        role="repaired_model",
        normalization=signature.normalization,
    )
    defense = {**repair.model_dump(mode="json", exclude_none=True), **outcome.report["method"]["params"]}
    body = {"defense": defense, "training": None, "preprocessing": None, "repair": outcome.report}
    checks = _checks(outcome.report)
    return Outcome(
        body,
        checks,
        _summary(outcome.report),
        THREAT_MODEL,
        _artifacts(outcome, signature.input_range),
        [derived],
    )
