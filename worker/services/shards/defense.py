"""Defense shards: the defense is trained once, its evaluation split into slices of whole batches.

The worker that splits the job runs `prepare` once: it checks, hardens and exports the defense
(`prepare_defense`, progress weighed by the training alone) and hands it back as bytes (`prepared_to_bytes`,
with the intake reports of its exports), which the splitting runner keeps as shard 0's result. Every
evaluation shard restores that defense (`restore_prepared`, no training) and attacks its slice with every
side's attacks (`evaluate_defense_slice`), counting the slice's work only; the merge restores it once more,
joins the slices, runs the sanity runs and the defense's own measurements (`finish_defense_run`) and
registers the result through the unsplit executor's code, so the Outcome is the one an unsplit job gives.
Random streams are keyed by the seed and sample position, so the figures do not depend on the split.
Backdoor repairs and evaluations of one slice stay in one piece (the unsplit executor).
"""

import math
from typing import Any

import numpy as np

from app.schemas.defense import DefenseJobSpec, EvaluatedDefenseSpec
from app.schemas.repair import BackdoorRepairParams
from app.settings import Settings
from worker.engine.defense.evaluation import (
    defense_slice_from_bytes,
    defense_slice_to_bytes,
    evaluate_defense_slice,
)
from worker.engine.defense.prepared_bytes import prepared_to_bytes, restore_prepared
from worker.engine.defense.runner import (
    PreparedDefense,
    defense_plan,
    finish_defense_run,
    finish_units,
    prepare_defense,
    slice_units,
)
from worker.engine.npz_bytes import npz_bytes, read_npz_bytes
from worker.engine.progress import ProgressTracker
from worker.services.context import JobData, RunEnv
from worker.services.kinds.defense import (
    DefenseGraph,
    check_target,
    defense_inputs,
    defense_outcome,
    engine_failures,
)
from worker.services.outputs import Outcome
from worker.services.targets import Target

# The key under which the shard runner hands a piece the prepared defense's bytes (with its plan).
PREPARED = "prepared"


def _evaluated(spec: DefenseJobSpec) -> EvaluatedDefenseSpec:
    """The job's defense; a backdoor repair is never split (its plan is one piece)."""
    defense = spec.params.defense
    if isinstance(defense, BackdoorRepairParams):
        raise ValueError("a backdoor repair runs in one piece")
    return defense


def plan(
    spec: DefenseJobSpec, data: JobData, settings: Settings, sharding: dict[str, Any]
) -> list[dict[str, Any]]:
    """Slices [start, stop) of whole evaluation batches, at most max_shards; one piece for a repair."""
    if isinstance(spec.params.defense, BackdoorRepairParams):
        return [{}]
    evaluation = spec.params.evaluation
    n, batch = min(evaluation.max_samples, len(data.held_out.x)), evaluation.batch_size
    wanted = int(sharding.get("samples_per_shard") or settings.evasion_samples_per_shard)
    most = min(int(sharding.get("max_shards") or settings.max_shards_per_job), settings.max_shards_per_job)
    batches = math.ceil(n / batch)
    per = max(math.ceil(wanted / batch), math.ceil(batches / most), 1)
    return [
        {"start": first * batch, "stop": min((first + per) * batch, n), "total": n}
        for first in range(0, batches, per)
    ]


def prepare(spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv) -> bytes:
    """Check, harden and export the defense once; it and its exports' intake reports as bytes."""
    check_target(target)
    graph = DefenseGraph(target, env.seed)
    inputs = defense_inputs(spec, target, data, env, graph)
    with engine_failures():
        prepared = prepare_defense(_evaluated(spec), spec.params.evaluation, count_evaluation=False, **inputs)
        stored = prepared_to_bytes(prepared, graph.export)
    return npz_bytes({"prepared": np.frombuffer(stored, dtype=np.uint8)}, graph.intake_records())


def _restore(
    spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv, data_bytes: bytes
) -> tuple[PreparedDefense, DefenseGraph]:
    """The prepared defense `prepare` stored, and a graph that knows its exports' intake reports."""
    with read_npz_bytes(data_bytes) as (stored, intakes):
        prepared_bytes = stored["prepared"].tobytes()
    graph = DefenseGraph(target, env.seed)
    graph.remember(intakes)
    inputs = defense_inputs(spec, target, data, env, graph)
    with engine_failures():
        prepared = restore_prepared(prepared_bytes, _evaluated(spec), spec.params.evaluation, **inputs)
    return prepared, graph


def run_piece(
    spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv, piece: dict[str, Any]
) -> bytes:
    """Every side's attacks on one slice of the prepared defense; its per-sample outcomes as bytes."""
    prepared, _ = _restore(spec, target, data, env, piece[PREPARED])
    evaluation = defense_plan(prepared)
    start, stop = int(piece["start"]), int(piece["stop"])
    prepared.context.tracker = ProgressTracker(slice_units(evaluation, stop - start), env.progress)
    part = evaluate_defense_slice(
        evaluation, prepared.x[start:stop], prepared.y[start:stop], start=start, total=len(prepared.x),
        tracker=prepared.context.tracker,
    )  # fmt: skip
    return defense_slice_to_bytes(part)


def merge(spec: DefenseJobSpec, target: Target, data: JobData, env: RunEnv, pieces: list[bytes]) -> Outcome:
    """The job's outcome from the prepared defense (pieces[0], shard 0's result) and every slice after it."""
    prepared, graph = _restore(spec, target, data, env, pieces[0])
    evaluation = defense_plan(prepared)
    prepared.context.tracker = ProgressTracker(finish_units(prepared, evaluation), env.progress)
    parts = [defense_slice_from_bytes(piece) for piece in pieces[1:]]
    with engine_failures():
        outcome = finish_defense_run(prepared, evaluation, parts)
    return defense_outcome(spec, graph, outcome)
