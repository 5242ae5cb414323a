"""The table of kinds that split: plan, run one piece, merge the pieces into the job's outcome."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.schemas.evasion import EvasionJobSpec
from app.schemas.extraction import ExtractionJobSpec
from app.schemas.poisoning import PoisoningJobSpec
from app.settings import Settings
from worker.services.context import JobData, RunEnv
from worker.services.outputs import Outcome
from worker.services.shards import evasion, extraction, poisoning
from worker.services.targets import Target


@dataclass(frozen=True)
class ShardedKind:
    """How one kind splits: plan(spec, data, settings, sharding), run_piece(...), merge(...)."""

    plan: Callable[[Any, JobData, Settings, dict[str, Any]], list[dict[str, Any]]]
    run_piece: Callable[[Any, Target, JobData, RunEnv, dict[str, Any]], bytes]
    merge: Callable[[Any, Target, JobData, RunEnv, list[bytes]], Outcome]


SHARDED: dict[type, ShardedKind] = {
    EvasionJobSpec: ShardedKind(evasion.plan, evasion.run_piece, evasion.merge),
    ExtractionJobSpec: ShardedKind(extraction.plan, extraction.run_piece, extraction.merge),
    PoisoningJobSpec: ShardedKind(poisoning.plan, poisoning.run_piece, poisoning.merge),
}
