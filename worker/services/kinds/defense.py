"""The defense executor: harden or wrap the model, export it, evaluate it adaptively, register the result."""

import hashlib
from dataclasses import asdict
from typing import Any

from torch import nn

from worker.engine.defense.evaluation import Classify
from worker.engine.defense.runner import DefenseOutcome, run_defense
from worker.engine.defense.spec import SpecError, WeightsMissing
from worker.engine.models.export import ExportError, verified_export
from worker.engine.models.intake import IntakeReport, OnnxRuntimeClassifier, load_onnx_module, validate_onnx
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.services.context import JobContext, ModelSnapshot
from worker.services.job_state import JobFailure
from worker.services.outputs import DerivedModel, JobOutput, finish_output, npz_artifact

THREAT_MODEL = {
    "attacker": "knows the defense and perturbs test inputs within each attack's eps: gradients through the "
    "model, BPDA through non-differentiable preprocessing, EOT over random preprocessing, the logits of a "
    "distilled model; the naive defense-unaware attack is reported beside the adaptive one",
    "defender": "trains or wraps the model as the defense says and deploys the result (the derived model)",
}


class _Graph:
    """The model's own graph for training and export, behind its declared normalization where it has one.

    Every export (the hardened model, a trained baseline) keeps its intake report by the bytes' digest.
    """

    def __init__(self, model: ModelSnapshot, seed: int) -> None:
        self.model, self.seed = model, seed
        self.intakes: dict[str, IntakeReport] = {}

    def wrap(self, module: nn.Module) -> nn.Module:
        """A raw graph as a module on inputs in the input range."""
        norm = self.model.normalization
        if not norm:
            return module
        return Normalized(module, norm["mean"], norm["std"], len(self.model.input_shape))

    def trainable(self, init: str) -> nn.Module:
        """A trainable copy of the graph (init pretrained or random)."""
        return self.wrap(self.model.trainable(init, self.seed))

    def export(self, module: nn.Module) -> bytes:
        """Trained weights back into the user's graph (or a catalog export), through the intake."""
        inner = module.inner if isinstance(module, Normalized) else module
        source = self.model.blob if self.model.format == "onnx" else None
        onnx, intake = verified_export(
            inner,
            input_shape=self.model.input_shape,
            num_classes=self.model.num_classes,
            input_range=self.model.input_range,
            source_onnx=source,
            seed=self.seed,
        )
        self.intakes[hashlib.sha256(onnx).hexdigest()] = intake
        return onnx

    def intake(self, onnx: bytes) -> IntakeReport:
        """The intake report of bytes this graph exported."""
        return self.intakes[hashlib.sha256(onnx).hexdigest()]

    def load(self, onnx: bytes) -> tuple[nn.Module, Classify]:
        """Exported bytes as the white-box module and the onnxruntime classifier, on range inputs."""
        classify: Classify = OnnxRuntimeClassifier(onnx)
        norm = self.model.normalization
        if norm:
            classify = normalized_classifier(classify, norm["mean"], norm["std"], len(self.model.input_shape))
        return self.wrap(load_onnx_module(onnx)), classify

    def base_graph(self) -> tuple[bytes, IntakeReport]:
        """The uploaded graph as ONNX (a safetensors model exported), with its intake report."""
        model = self.model
        if model.format == "onnx" and model.blob is not None:
            return model.blob, validate_onnx(
                model.blob, model.input_shape, model.num_classes, model.input_range
            )
        return verified_export(
            model.graph_module(),
            input_shape=model.input_shape,
            num_classes=model.num_classes,
            input_range=model.input_range,
            seed=self.seed,
        )


def _derived(ctx: JobContext, graph: _Graph, outcome: DefenseOutcome) -> DerivedModel:
    """The hardened (or defended) model to register."""
    model, name = ctx.model, ctx.params["defense"]["name"]
    if outcome.model.onnx is not None:
        onnx, intake = outcome.model.onnx, graph.intake(outcome.model.onnx)
    else:
        onnx, intake = graph.base_graph()
    preprocessing = outcome.model.preprocessing
    return DerivedModel(
        name=f"{name} of {model.name}",
        onnx=onnx,
        intake=asdict(intake),
        white_box=bool(intake.white_box),
        input_shape=model.input_shape,
        num_classes=model.num_classes,
        input_range=model.input_range,
        derived_from=model.id,
        role="defended_model" if preprocessing else "hardened_model",
        normalization=model.normalization,
        preprocessing=preprocessing,
    )


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline and whether every check passed."""
    return {"headline": report["headline"], "checks_passed": all(c["passed"] for c in report["checks"])}


def execute(ctx: JobContext) -> JobOutput:
    """Run the defense on the held-out set (and the training set), register the hardened model."""
    model, params = ctx.model, ctx.params
    if model.preprocessing:
        raise JobFailure("already_defended", f"model {model.id} is already a defended model")
    train = ctx.datasets.get("train_dataset_id")
    if params.get("train_dataset_id") and train is None:
        raise JobFailure(
            "dataset_not_found", f"training set {params['train_dataset_id']} could not be loaded"
        )
    graph = _Graph(model, ctx.seed)
    # An architecture without weights has no undefended model: the defense trains its baseline.
    weights = model.has_weights
    try:
        outcome = run_defense(
            params["defense"],
            params.get("evaluation"),
            undefended=model.white_box_module() if weights else None,
            x=ctx.data.x,
            y=ctx.data.y,
            num_classes=model.num_classes,
            trainable=graph.trainable,
            train=(train.x, train.y) if train is not None else None,
            undefended_classify=model.classifier() if weights else None,
            export=graph.export,
            load_exported=graph.load,
            input_range=model.input_range,
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress,
        )
        derived = _derived(ctx, graph, outcome)
    except ExportError as exc:
        raise JobFailure("export_failed", f"the hardened model could not be exported: {exc}") from exc
    except WeightsMissing as exc:
        raise JobFailure("model_untrained", str(exc)) from exc
    except SpecError as exc:
        raise JobFailure("defense_invalid", str(exc)) from exc
    body = dict(outcome.report)
    checks = body.pop("checks")
    artifacts = [
        npz_artifact("certificates" if name == "certificates" else "adversarial_examples", name, arrays)
        for name, arrays in outcome.arrays.items()
    ]
    return finish_output(
        ctx,
        body,
        _summary({**body, "checks": checks}),
        threat_model=THREAT_MODEL,
        checks=checks,
        artifacts=artifacts,
        derived_models=[derived],
    )
