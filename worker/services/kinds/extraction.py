"""The extraction executor: steal the victim through its prediction interface, register the surrogates."""

from typing import Any

import numpy as np
from torch import nn

from worker.engine.extraction import ExtractionError, run_extraction
from worker.engine.extraction.pools import SYNTHETIC_UNIFORM, synthetic_uniform
from worker.engine.extraction.surrogate import SurrogateFactory
from worker.engine.models.export import ExportError
from worker.engine.training.trainable import build_trainable
from worker.services.context import JobContext
from worker.services.job_state import JobFailure
from worker.services.outputs import DerivedModel, JobOutput, finish_output, npz_artifact

THREAT_MODEL = {
    "attacker": "queries the victim's prediction interface only, within each budget",
    "sees": "what victim_output and the defense return (labels only for label-only rows)",
    "holds": "an unlabeled query pool and the surrogate's architecture",
}


def _pool(ctx: JobContext) -> np.ndarray:
    """The attacker's pool: the loaded dataset, or a seeded uniform one as large as the largest budget."""
    pool_id = ctx.params["query_dataset_id"]
    if pool_id == SYNTHETIC_UNIFORM:
        n = int(ctx.params["budgets"][-1])
        return synthetic_uniform(ctx.model.input_shape, n, ctx.model.input_range, ctx.seed)
    if "query_dataset_id" not in ctx.datasets:
        raise JobFailure("dataset_not_found", f"query pool {pool_id} could not be loaded")
    return ctx.datasets["query_dataset_id"].x


def _factory(ctx: JobContext) -> SurrogateFactory:
    """Fresh surrogates: the victim's ONNX graph re-initialised, or a catalog architecture."""
    model = ctx.model
    architecture = ctx.params.get("surrogate", {}).get("architecture", "victim")
    if architecture == "victim" and (model.format != "onnx" or model.blob is None):
        raise JobFailure("surrogate_needs_onnx_victim", "architecture 'victim' needs an uploaded ONNX victim")

    def make(seed: int) -> nn.Module:
        try:
            return build_trainable(
                architecture=None if architecture == "victim" else architecture,
                onnx_bytes=model.blob if architecture == "victim" else None,
                safetensors_bytes=None,
                input_shape=model.input_shape,
                num_classes=model.num_classes,
                init="random",
                seed=seed,
            )
        except ValueError as exc:
            raise JobFailure("surrogate_shape_mismatch", f"surrogate {architecture!r}: {exc}") from exc

    make(0)  # fail before the first query when the surrogate cannot be built
    return make


def _summary(report: dict[str, Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per attack, the undefended surrogate's fidelity at the largest budget."""
    return {
        "victim_accuracy": report["victim_accuracy"],
        "budgets": report["budgets"],
        "fidelity": [
            {"attack": a["label"], "fidelity": a["rows"][0]["results"][-1]["fidelity"]}
            for a in report["attacks"]
        ],
        "checks_passed": all(check["passed"] for check in checks),
    }


def execute(ctx: JobContext) -> JobOutput:
    """Run every attack against every defense row and register each attack's largest-budget surrogate."""
    model = ctx.model
    victim = model.classifier()
    if victim is None:
        raise JobFailure("victim_not_queryable", f"model {model.id} has no prediction interface to query")
    pool, make_surrogate = _pool(ctx), _factory(ctx)
    white_box = model.white_box_module() if model.white_box and model.blob is not None else None
    try:
        outcome = run_extraction(
            victim,
            ctx.data.x,
            ctx.data.y,
            pool,
            ctx.params,
            input_shape=model.input_shape,
            num_classes=model.num_classes,
            input_range=model.input_range,
            make_surrogate=make_surrogate,
            victim_white_box=white_box,
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress,
        )
    except ExtractionError as exc:
        raise JobFailure(exc.code, exc.message) from exc
    except ExportError as exc:
        raise JobFailure("export_failed", f"a surrogate could not be exported: {exc}") from exc
    body = dict(outcome.report)
    checks = body.pop("checks")
    artifacts = [npz_artifact("query_log", name, arrays) for name, arrays in outcome.query_logs.items()]
    derived = [
        DerivedModel(
            name=f"surrogate of {model.name}: {surrogate.label}, {surrogate.queries} queries",
            onnx=surrogate.onnx,
            intake=surrogate.intake,
            white_box=bool(surrogate.intake.get("white_box", True)),
            input_shape=model.input_shape,
            num_classes=model.num_classes,
            input_range=model.input_range,
            derived_from=model.id,
            role="surrogate",
        )
        for surrogate in outcome.surrogates
    ]
    return finish_output(
        ctx,
        body,
        _summary(body, checks),
        threat_model=THREAT_MODEL,
        checks=checks,
        artifacts=artifacts,
        derived_models=derived,
    )
