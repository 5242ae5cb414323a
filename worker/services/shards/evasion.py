"""Evasion shards: slices of whole batches of the evaluated samples, every attack on each slice."""

import math
from typing import Any

from app.schemas.evasion import EvasionJobSpec
from app.settings import Settings
from worker.engine.evasion.patch_eval import physical_evaluation
from worker.engine.evasion.runner import evaluate_slice, finish_evasion
from worker.engine.evasion.slices import slice_from_bytes, slice_to_bytes
from worker.services.context import JobData, RunEnv
from worker.services.kinds.evasion import outcome_of
from worker.services.outputs import Outcome
from worker.services.targets import Target


def plan(
    spec: EvasionJobSpec, data: JobData, settings: Settings, sharding: dict[str, Any]
) -> list[dict[str, Any]]:
    """Slices [start, stop) of whole batches; one slice when a patch attack trains on all samples."""
    n = min(spec.params.max_samples, len(data.held_out.x))
    batch = spec.params.batch_size
    if any(physical_evaluation(attack) is not None for attack in spec.params.attacks):
        return [{"start": 0, "stop": n, "total": n}]
    wanted = int(sharding.get("samples_per_shard") or settings.evasion_samples_per_shard)
    most = min(int(sharding.get("max_shards") or settings.max_shards_per_job), settings.max_shards_per_job)
    batches = math.ceil(n / batch)
    per = max(math.ceil(wanted / batch), math.ceil(batches / most))
    return [
        {"start": first * batch, "stop": min((first + per) * batch, n), "total": n}
        for first in range(0, batches, per)
    ]


def run_piece(
    spec: EvasionJobSpec, target: Target, data: JobData, env: RunEnv, piece: dict[str, Any]
) -> bytes:
    """Attack one slice; its per-sample outcomes as bytes."""
    start, stop = int(piece["start"]), int(piece["stop"])
    model = target.module().to(env.device) if target.white_box else None
    part = evaluate_slice(
        model, data.held_out.x[start:stop], data.held_out.y[start:stop], spec.params.attacks, start=start,
        total=int(piece["total"]), input_range=target.signature.input_range,
        batch_size=spec.params.batch_size, seed=env.seed, device=env.device, progress=env.progress,
        black_box=target.black_box_model(),
    )  # fmt: skip
    return slice_to_bytes(part)


def merge(spec: EvasionJobSpec, target: Target, data: JobData, env: RunEnv, pieces: list[bytes]) -> Outcome:
    """The job's outcome from every slice: metrics, worst case, checks and sanity runs over all samples."""
    limit = spec.params.max_samples
    model = target.module().to(env.device) if target.white_box else None
    outcome = finish_evasion(
        model, data.held_out.x[:limit], data.held_out.y[:limit], spec.params.attacks,
        [slice_from_bytes(piece) for piece in pieces], input_range=target.signature.input_range,
        batch_size=spec.params.batch_size, seed=env.seed, device=env.device, progress=env.progress,
        black_box=target.black_box_model(), sanity_runs=spec.params.sanity_runs,
    )  # fmt: skip
    return outcome_of(outcome)
