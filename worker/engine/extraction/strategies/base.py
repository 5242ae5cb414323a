"""The strategy interface: how an attacker spends its query budget, given only the victim's interface."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch

from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.surrogate import SurrogateTrainer
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


class Strategy(ABC):
    """An extraction attack's query strategy.

    It sees the victim only through a QueryInterface (labels, or scores, within a budget) and the
    attacker's unlabeled pool, and issues queries until the budget is spent (or it has nothing left to
    ask). The runner then trains surrogates on prefixes of the logged stream, one per budget.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    # True when every query is a pool sample drawn without replacement (budget <= pool size).
    draws_from_pool: ClassVar[bool] = True
    SPEC_KEYS: ClassVar[tuple[str, ...]] = ()
    # Spec keys that differ from constructor names (a Python keyword such as lambda).
    RENAMED: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry; unknown keys are an error, None keeps the default."""
        unknown = sorted(set(spec) - {"name", *cls.SPEC_KEYS})
        if unknown:
            known = ", ".join(sorted(cls.SPEC_KEYS))
            raise ValueError(f"{cls.name}: unknown parameters {', '.join(unknown)}; known: {known}")
        options = {cls.RENAMED.get(k, k): spec[k] for k in cls.SPEC_KEYS if spec.get(k) is not None}
        return cls(**options)

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report (spec names)."""
        return {key: getattr(self, self.RENAMED.get(key, key)) for key in self.SPEC_KEYS}

    @property
    def label(self) -> str:
        """A short name for people."""
        return self.name

    def min_pool(self, budget: int) -> int:
        """The fewest pool samples the strategy needs for a budget."""
        return budget if self.draws_from_pool else 1

    def work_units(self, budget: int, epochs: int) -> float:
        """Work besides the queries (intermediate training), in trained samples x epochs."""
        return 0.0

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
