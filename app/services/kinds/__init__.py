"""Submission rules per job kind: compatibility checks and a cost estimate, before anything is queued."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.orm import ModelRecord
from app.services.context import ServiceContext
from app.services.dataset_arrays import DatasetFacts
from app.services.kinds import defense, evasion, extraction, poisoning


@dataclass(frozen=True)
class KindRules:
    """What submission checks for a kind: `check` raises a 4xx; `estimate_cost` returns work units.

    Both get the held-out dataset's facts, read once by the submission.
    """

    check: Callable[[ServiceContext, ModelRecord, Any, DatasetFacts], None]
    estimate_cost: Callable[[ServiceContext, ModelRecord, Any, DatasetFacts], float]


KIND_RULES: dict[str, KindRules] = {
    "evasion": KindRules(check=evasion.check, estimate_cost=evasion.estimate_cost),
    "extraction": KindRules(check=extraction.check, estimate_cost=extraction.estimate_cost),
    "poisoning": KindRules(check=poisoning.check, estimate_cost=poisoning.estimate_cost),
    "defense": KindRules(check=defense.check, estimate_cost=defense.estimate_cost),
}
