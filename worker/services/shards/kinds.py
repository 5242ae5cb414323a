"""The table of kinds that split: plan, run one piece, merge the pieces into the job's outcome.

A kind with a `prepare` step (defense: train the defended model once) has it run by the worker that splits
the job, before the shards are written; its bytes become shard 0's result (a blob, the shard already
succeeded) and the planned pieces follow as shards 1.. with the blob's digest in their plan. The shard
runner then hands each piece the prepared bytes under `PREPARED`, and the merge gets them first among the
pieces (shard 0's result, in shard order).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.schemas.defense import DefenseJobSpec
from app.schemas.evasion import EvasionJobSpec
from app.schemas.extraction import ExtractionJobSpec
from app.schemas.poisoning import PoisoningJobSpec
from app.settings import Settings
from worker.services.context import JobData, RunEnv
from worker.services.outputs import Outcome
from worker.services.shards import defense, evasion, extraction, poisoning
from worker.services.shards.defense import PREPARED
from worker.services.targets import Target

__all__ = ["PREPARED", "SHARDED", "ShardedKind"]


@dataclass(frozen=True)
class ShardedKind:
    """How one kind splits: plan(spec, data, settings, sharding), run_piece(...), merge(...), and an
    optional prepare(spec, target, data, env) whose bytes every piece and the merge share."""

    plan: Callable[[Any, JobData, Settings, dict[str, Any]], list[dict[str, Any]]]
    run_piece: Callable[[Any, Target, JobData, RunEnv, dict[str, Any]], bytes]
    merge: Callable[[Any, Target, JobData, RunEnv, list[bytes]], Outcome]
    prepare: Callable[[Any, Target, JobData, RunEnv], bytes] | None = None


SHARDED: dict[type, ShardedKind] = {
    EvasionJobSpec: ShardedKind(evasion.plan, evasion.run_piece, evasion.merge),
    ExtractionJobSpec: ShardedKind(extraction.plan, extraction.run_piece, extraction.merge),
    PoisoningJobSpec: ShardedKind(poisoning.plan, poisoning.run_piece, poisoning.merge),
    DefenseJobSpec: ShardedKind(defense.plan, defense.run_piece, defense.merge, defense.prepare),
}
