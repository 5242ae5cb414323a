"""The extraction executor: steal the victim through its prediction interface, register the surrogates."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from app.schemas.extraction import ExtractionJobSpec
from worker.engine.extraction import ExtractionOutcome, finish_extraction, prepare_extraction
from worker.engine.extraction.attack_run import AttackRunner
from worker.engine.extraction.cells import CellResult
from worker.engine.extraction.plan import Cell
from worker.engine.extraction.pools import SYNTHETIC_UNIFORM, synthetic_uniform
from worker.engine.extraction.surrogate import SurrogateFactory
from worker.engine.models.export import ExportError
from worker.engine.training.trainable import build_trainable
from worker.services.context import JobData, RunEnv
from worker.services.job_state import JobFailure
from worker.services.outputs import DerivedModel, Outcome, npz_artifact
from worker.services.targets import Target

THREAT_MODEL = {
    "attacker": "queries the victim's prediction interface only, within each budget",
    "sees": "what victim_output and the defense return (labels only for label-only rows)",
    "holds": "an unlabeled query pool and the surrogate's architecture",
}


def _pool(spec: ExtractionJobSpec, target: Target, data: JobData, seed: int) -> np.ndarray:
    """The attacker's pool: the loaded dataset, or a seeded uniform one as large as the largest budget."""
    pool_id = spec.params.query_dataset_id
    if pool_id == SYNTHETIC_UNIFORM:
        n = int(spec.params.budgets[-1])
        return synthetic_uniform(target.signature.input_shape, n, target.signature.input_range, seed)
    return data.require("query_dataset_id", pool_id, "query pool").x


def _factory(spec: ExtractionJobSpec, target: Target) -> SurrogateFactory:
    """Fresh surrogates: the victim's ONNX graph re-initialised, or a catalog architecture."""
    architecture = spec.params.surrogate.architecture
    victim_graph = target.onnx_bytes()
    if architecture == "victim" and victim_graph is None:
        raise JobFailure("surrogate_needs_onnx_victim", "architecture 'victim' needs an uploaded ONNX victim")
    signature = target.signature

    def make(seed: int) -> nn.Module:
        try:
            return build_trainable(
                architecture=None if architecture == "victim" else architecture,
                onnx_bytes=victim_graph if architecture == "victim" else None,
                safetensors_bytes=None,
                input_shape=signature.input_shape,
                num_classes=signature.num_classes,
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


def prepare(
    spec: ExtractionJobSpec,
    target: Target,
    data: JobData,
    env: RunEnv,
    cells: Sequence[Cell] | None = None,
    finishing: bool = True,
    victim_probs: np.ndarray | None = None,
) -> AttackRunner:
    """The checked inputs every cell and the finish share: victim, pool, evaluation set, surrogates."""
    victim = target.classifier()
    if victim is None:
        raise JobFailure("victim_not_queryable", f"model {target.id} has no prediction interface to query")
    pool, make_surrogate = _pool(spec, target, data, env.seed), _factory(spec, target)
    signature = target.signature
    return prepare_extraction(
        victim, data.held_out.x, data.held_out.y, pool, spec.params, input_shape=signature.input_shape,
        num_classes=signature.num_classes, input_range=signature.input_range, make_surrogate=make_surrogate,
        seed=env.seed, device=env.device, progress=env.progress, cells=cells, finishing=finishing,
        victim_probs=victim_probs,
    )  # fmt: skip


def run_cells(runner: AttackRunner, cells: Sequence[Cell]) -> list[CellResult]:
    """Run cells; a surrogate that cannot be exported fails the job with export_failed."""
    try:
        return [runner.run_cell(cell) for cell in cells]
    except ExportError as exc:
        raise JobFailure("export_failed", f"a surrogate could not be exported: {exc}") from exc


def run(spec: ExtractionJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Run every attack against every defense row and register each attack's largest-budget surrogate."""
    runner = prepare(spec, target, data, env)
    results = run_cells(runner, runner.plan.cells())
    return outcome_of(finish_extraction(runner, results, target.differentiable()), target)


def outcome_of(outcome: ExtractionOutcome, target: Target) -> Outcome:
    """The job outcome of an extraction: report body, checks, summary, query logs and surrogates."""
    signature = target.signature
    body = dict(outcome.report)
    checks = body.pop("checks")
    artifacts = [npz_artifact("query_log", name, arrays) for name, arrays in outcome.query_logs.items()]
    derived = [
        DerivedModel(
            name=f"surrogate of {target.name}: {surrogate.label}, {surrogate.queries} queries",
            onnx=surrogate.onnx,
            intake=surrogate.intake,
            white_box=bool(surrogate.intake.get("white_box", True)),
            input_shape=signature.input_shape,
            num_classes=signature.num_classes,
            input_range=signature.input_range,
            derived_from=target.id,
            role="surrogate",
        )
        for surrogate in outcome.surrogates
    ]
    return Outcome(body, checks, _summary(body, checks), THREAT_MODEL, artifacts, derived)
