"""Poisoning shards: pieces of trained victims (attack, rate and target trial), the report merged once.

A piece holds `victims_per_shard` victims (the job's `sharding`, else the setting
`poisoning_victims_per_shard`, default 4; 1 gives one shard per victim). Every piece trains the clean
baseline it measures its victims against (the same seed gives the same baseline everywhere); the merge
trains it once more for the baseline figures and detection, takes the pieces' victims as they ran and
builds the report exactly as an unsplit job does. Audits and scans train no victims and stay one piece.
"""

import math
from typing import Any

from app.schemas.poisoning import PoisoningJobSpec, TargetedParams
from app.settings import Settings
from worker.engine.poisoning.victim_run import VictimKey, VictimRun, runs_from_bytes, runs_to_bytes
from worker.services.context import JobData, RunEnv
from worker.services.kinds.poisoning import attack_outcome, engine_failures, run_attack_mode
from worker.services.outputs import Outcome
from worker.services.targets import Target


def victims(spec: PoisoningJobSpec) -> list[VictimKey]:
    """Every victim of the job, in report order: attack, rate, target trial."""
    return [
        (index, rate_index, trial)
        for index, attack in enumerate(spec.params.attacks)
        for rate_index in range(len(attack.rate))
        for trial in range(attack.targets if isinstance(attack, TargetedParams) else 1)
    ]


def plan(
    spec: PoisoningJobSpec, data: JobData, settings: Settings, sharding: dict[str, Any]
) -> list[dict[str, Any]]:
    """Pieces of victims_per_shard consecutive victims (more when there would be more than max_shards)."""
    if spec.params.scan or not spec.params.attacks:
        return [{}]
    keys = victims(spec)
    most = min(int(sharding.get("max_shards") or settings.max_shards_per_job), settings.max_shards_per_job)
    wanted = int(sharding.get("victims_per_shard") or settings.poisoning_victims_per_shard)
    per = max(wanted, math.ceil(len(keys) / most))
    return [
        {"victims": [list(key) for key in keys[first : first + per]]} for first in range(0, len(keys), per)
    ]


def run_piece(
    spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv, piece: dict[str, Any]
) -> bytes:
    """Train this piece's victims; their runs as bytes."""
    only = {(int(a), int(r), int(t)) for a, r, t in piece["victims"]}
    outcome = engine_failures(lambda: run_attack_mode(spec, target, data, env, only=only))
    return runs_to_bytes(outcome.runs)


def merge(spec: PoisoningJobSpec, target: Target, data: JobData, env: RunEnv, pieces: list[bytes]) -> Outcome:
    """The job's outcome from every piece's victims: the report an unsplit job gives."""
    done: dict[VictimKey, VictimRun] = {}
    for piece in pieces:
        done |= runs_from_bytes(piece)
    outcome = engine_failures(lambda: run_attack_mode(spec, target, data, env, done=done))
    return attack_outcome(target, outcome)
