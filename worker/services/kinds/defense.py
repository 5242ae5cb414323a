"""The defense executor: harden or wrap the model, export it, evaluate it adaptively, register the result.

Its parts are shared with the sharded run (worker.services.shards.defense): the inputs the engine takes
(`defense_inputs`), the engine's refusals as failure codes (`engine_failures`) and the registration of the
outcome (`defense_outcome`), so a split job gives the Outcome of an unsplit one.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from torch import nn

from app.schemas.defense import DefenseJobSpec
from app.schemas.repair import BackdoorRepairParams
from worker.engine.defense.evaluation import Classify
from worker.engine.defense.runner import DefenseInputs, DefenseOutcome, run_defense
from worker.engine.defense.spec import SpecError, WeightsMissing
from worker.engine.models.export import ExportError, verified_export
from worker.engine.models.intake import IntakeReport, OnnxRuntimeClassifier, load_onnx_module, validate_onnx
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.services.context import JobData, RunEnv
from worker.services.job_state import JobFailure
from worker.services.kinds.repair import run_backdoor_repair
from worker.services.outputs import DerivedModel, Outcome, npz_artifact
from worker.services.targets import Target

THREAT_MODEL = {
    "attacker": "knows the defense and perturbs test inputs within each attack's eps: gradients through the "
    "model, BPDA through non-differentiable preprocessing, EOT over random preprocessing, the logits of a "
    "distilled model; the naive defense-unaware attack is reported beside the adaptive one",
    "defender": "trains or wraps the model as the defense says and deploys the result (the derived model)",
}


class DefenseGraph:
    """The model's own graph for training and export, behind its declared normalization where it has one.

    Every export (the hardened model, a trained baseline) keeps its intake report by the bytes' digest;
    `intake_records` and `remember` carry them to another worker with the exported bytes.
    """

    def __init__(self, target: Target, seed: int) -> None:
        self.target, self.signature, self.seed = target, target.signature, seed
        self.intakes: dict[str, IntakeReport] = {}

    def wrap(self, module: nn.Module) -> nn.Module:
        """A raw graph as a module on inputs in the input range."""
        norm = self.signature.normalization
        if not norm:
            return module
        return Normalized(module, norm["mean"], norm["std"], len(self.signature.input_shape))

    def trainable(self, init: str) -> nn.Module:
        """A trainable copy of the graph (init pretrained or random)."""
        return self.wrap(self.target.trainable(init, self.seed))

    def export(self, module: nn.Module) -> bytes:
        """Trained weights back into the user's graph (or a catalog export), through the intake."""
        inner = module.inner if isinstance(module, Normalized) else module
        onnx, intake = verified_export(
            inner,
            input_shape=self.signature.input_shape,
            num_classes=self.signature.num_classes,
            input_range=self.signature.input_range,
            source_onnx=self.target.onnx_bytes(),
            seed=self.seed,
        )
        self.intakes[hashlib.sha256(onnx).hexdigest()] = intake
        return onnx

    def intake(self, onnx: bytes) -> IntakeReport:
        """The intake report of bytes this graph exported."""
        return self.intakes[hashlib.sha256(onnx).hexdigest()]

    def intake_records(self) -> dict[str, dict[str, Any]]:
        """The intake reports of this graph's exports, by digest, as JSON-ready records."""
        return {digest: asdict(report) for digest, report in self.intakes.items()}

    def remember(self, records: dict[str, dict[str, Any]]) -> None:
        """Intake reports another worker's graph exported (intake_records), for the same bytes here."""
        self.intakes.update({digest: IntakeReport(**record) for digest, record in records.items()})

    def load(self, onnx: bytes) -> tuple[nn.Module, Classify]:
        """Exported bytes as the white-box module and the onnxruntime classifier, on range inputs."""
        classify: Classify = OnnxRuntimeClassifier(onnx)
        norm = self.signature.normalization
        if norm:
            classify = normalized_classifier(
                classify, norm["mean"], norm["std"], len(self.signature.input_shape)
            )
        return self.wrap(load_onnx_module(onnx)), classify

    def base_graph(self) -> tuple[bytes, IntakeReport]:
        """The uploaded graph as ONNX (a safetensors model exported), with its intake report."""
        signature, uploaded = self.signature, self.target.onnx_bytes()
        if uploaded is not None:
            return uploaded, validate_onnx(
                uploaded, signature.input_shape, signature.num_classes, signature.input_range
            )
        return verified_export(
            self.target.graph_module(),
            input_shape=signature.input_shape,
            num_classes=signature.num_classes,
            input_range=signature.input_range,
            seed=self.seed,
        )


def _derived(spec: DefenseJobSpec, graph: DefenseGraph, outcome: DefenseOutcome) -> DerivedModel:
    """The hardened (or defended) model to register."""
    target, name = graph.target, spec.params.defense.name
    signature = target.signature
    if outcome.model.onnx is not None:
        onnx, intake = outcome.model.onnx, graph.intake(outcome.model.onnx)
    else:
        onnx, intake = graph.base_graph()
    preprocessing = outcome.model.preprocessing
    return DerivedModel(
        name=f"{name} of {target.name}",
        onnx=onnx,
        intake=asdict(intake),
        white_box=bool(intake.white_box),
        input_shape=signature.input_shape,
        num_classes=signature.num_classes,
        input_range=signature.input_range,
        derived_from=target.id,
        role="defended_model" if preprocessing else "hardened_model",
        normalization=signature.normalization,
        preprocessing=preprocessing,
    )


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline and whether every check passed."""
    return {"headline": report["headline"], "checks_passed": all(c["passed"] for c in report["checks"])}


@contextmanager
def engine_failures() -> Iterator[None]:
    """The defense engine's refusals (export, missing weights, an invalid defense) as stable failure codes."""
    try:
        yield
    except ExportError as exc:
        raise JobFailure("export_failed", f"the hardened model could not be exported: {exc}") from exc
    except WeightsMissing as exc:
        raise JobFailure("model_untrained", str(exc)) from exc
    except SpecError as exc:
        raise JobFailure("defense_invalid", str(exc)) from exc


def check_target(target: Target) -> None:
    """Refuse a model that is already a defended model (its preprocessing would be stacked)."""
    if target.preprocessing:
        raise JobFailure("already_defended", f"model {target.id} is already a defended model")


def defense_inputs(
    spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv, graph: DefenseGraph
) -> DefenseInputs:
    """The inputs of the engine's prepare_defense and restore_prepared (which leaves `export` unused)."""
    train_id = spec.params.train_dataset_id
    train = data.require("train_dataset_id", train_id, "training set") if train_id else None
    # An architecture without weights has no undefended model: the defense trains its baseline.
    weights = target.has_weights
    return DefenseInputs(
        undefended=target.module() if weights else None,
        x=data.held_out.x,
        y=data.held_out.y,
        num_classes=target.signature.num_classes,
        trainable=graph.trainable,
        train=(train.x, train.y) if train is not None else None,
        undefended_classify=target.classifier() if weights else None,
        export=graph.export,
        load_exported=graph.load,
        input_range=target.signature.input_range,
        seed=env.seed,
        device=env.device,
        progress=env.progress,
    )


def defense_outcome(spec: DefenseJobSpec, graph: DefenseGraph, outcome: DefenseOutcome) -> Outcome:
    """The job's Outcome from the engine's: report body and checks, artifacts and the derived model."""
    with engine_failures():
        derived = _derived(spec, graph, outcome)
    body = dict(outcome.report)
    checks = body.pop("checks")
    artifacts = [
        npz_artifact("certificates" if name == "certificates" else "adversarial_examples", name, arrays)
        for name, arrays in outcome.arrays.items()
    ]
    return Outcome(body, checks, _summary({**body, "checks": checks}), THREAT_MODEL, artifacts, [derived])


def run(spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Run the defense on the held-out set (and the training set), register the hardened model."""
    params = spec.params
    check_target(target)
    graph = DefenseGraph(target, env.seed)
    if isinstance(params.defense, BackdoorRepairParams):
        return run_backdoor_repair(spec, target, data, env, graph)
    with engine_failures():
        outcome = run_defense(
            params.defense, params.evaluation, **defense_inputs(spec, target, data, env, graph)
        )
    return defense_outcome(spec, graph, outcome)
