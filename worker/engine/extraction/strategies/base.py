"""The strategy interface: how an attacker spends its query budget, given only the victim's interface."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from app.schemas.extraction import ExtractionAttackSpec
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.surrogate import SurrogateTrainer
from worker.engine.from_spec import FromSpec
from worker.engine.progress import ProgressTracker

QUERY_BATCH = 256


@dataclass
class StrategyContext:
    """What a strategy may use besides the interface and the pool: a surrogate trainer, seed, device."""

    trainer: SurrogateTrainer
    seed: int
    device: torch.device
    input_range: tuple[float, float]
    progress: ProgressTracker | None = None

    def rng(self, *keys: int) -> np.random.Generator:
        """A NumPy generator for this strategy's own draws."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, *keys]))

    def advance(self, units: float, stage: str) -> None:
        """Report progress (and let a cancellation through)."""
        if self.progress is not None:
            self.progress.advance(units, stage)


class Strategy(FromSpec, ABC):
    """An extraction attack's query strategy, built from its typed spec (`spec_type`).

    It sees the victim only through a QueryInterface (labels, or scores, within a budget) and the
    attacker's unlabeled pool, and issues queries until the budget is spent (or it has nothing left to
    ask). The runner then trains surrogates on prefixes of the logged stream, one per budget.
    """

    spec: ExtractionAttackSpec
    paper: ClassVar[str]

    @property
    def label(self) -> str:
        """A short name for people."""
        return self.name

    def known_as(self, labels_only: bool) -> str | None:
        """The name the literature gives this attack in that setting, where it has one."""
        return None

    @abstractmethod
    def run(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """Spend interface.remaining queries on the victim."""


def query_in_batches(
    interface: QueryInterface, x: np.ndarray, ctx: StrategyContext, stage: str, batch: int = QUERY_BATCH
) -> list[np.ndarray]:
    """Query x in batches; returns the logged outputs of each batch (labels or scores)."""
    outputs = []
    for start in range(0, len(x), batch):
        answer = interface.query(x[start : start + batch])
        outputs.append(answer.labels if answer.scores is None else answer.scores)
        ctx.advance(len(answer.labels), stage)
    return outputs
