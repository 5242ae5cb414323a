"""Extraction shards: one per attack and output-policy (defense) row; the merge builds the one report.

A cell's figures are keyed by the run seed and its (attack, row) position, so cells run on any worker, in
any order, merge into the report of an unsplit run. A shard's partial result is the `.npz` of its cells:
report rows, and for undefended rows the query stream and the measured surrogate's ONNX (no pickles).
With more cells than the job's shard limit, neighbouring cells share a shard. Each shard measures the
victim on the evaluation set (evaluator queries, n_samples per shard); the merge reuses a shard's answers.
"""

from typing import Any

from app.schemas.extraction import ExtractionJobSpec
from app.settings import Settings
from worker.engine.extraction import finish_extraction
from worker.engine.extraction.cells import cells_from_bytes, cells_to_bytes
from worker.engine.extraction.plan import Cell, build_plan
from worker.services.context import JobData, RunEnv
from worker.services.kinds.extraction import outcome_of, prepare, run_cells
from worker.services.outputs import Outcome
from worker.services.targets import Target


def plan(
    spec: ExtractionJobSpec, data: JobData, settings: Settings, sharding: dict[str, Any]
) -> list[dict[str, Any]]:
    """The (attack, row) cells in at most max_shards contiguous groups of nearly equal size."""
    cells = build_plan(spec.params).cells()
    most = min(int(sharding.get("max_shards") or settings.max_shards_per_job), settings.max_shards_per_job)
    count = min(len(cells), most)
    size, extra = divmod(len(cells), count)
    pieces, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        pieces.append({"cells": [[cell.attack, cell.row] for cell in cells[start:stop]]})
        start = stop
    return pieces


def run_piece(
    spec: ExtractionJobSpec, target: Target, data: JobData, env: RunEnv, piece: dict[str, Any]
) -> bytes:
    """Run the shard's cells; their results as bytes."""
    cells = [Cell(int(attack), int(row)) for attack, row in piece["cells"]]
    runner = prepare(spec, target, data, env, cells=cells, finishing=False)
    return cells_to_bytes(run_cells(runner, cells), runner.data.victim_probs)


def merge(
    spec: ExtractionJobSpec, target: Target, data: JobData, env: RunEnv, pieces: list[bytes]
) -> Outcome:
    """The job's outcome from every shard's cells: report, checks, query logs and surrogates."""
    parts = [cells_from_bytes(piece) for piece in pieces]
    results = [result for cells, _ in parts for result in cells]
    runner = prepare(spec, target, data, env, cells=[], finishing=True, victim_probs=parts[0][1])
    return outcome_of(finish_extraction(runner, results, target.differentiable()), target)
