"""The per-class bookkeeping of the trigger search that Neural Cleanse and B3D share (its budget and
schedule are the scanner spec's: app.schemas.poisoning_scan.TriggerSearchParams)."""

from dataclasses import dataclass, field

import numpy as np

from app.schemas.poisoning_scan import TriggerSearchParams
from worker.engine.poisoning.scan.schedule import CostSchedule


def trigger_search(spec: TriggerSearchParams, classes: int) -> "TriggerSearch":
    """The per-class bookkeeping of one search over `classes` triggers, with the spec's cost schedule."""
    schedule = CostSchedule(
        classes,
        spec.init_cost,
        spec.success_threshold,
        spec.patience,
        spec.cost_multiplier,
        spec.early_stop_patience,
        bool(spec.reset_cost_to_zero),
    )
    return TriggerSearch(schedule, int(spec.epoch_steps))


@dataclass
class TriggerSearch:
    """Per class: the hit rate over the current schedule epoch, epochs run, and the cost schedule."""

    schedule: CostSchedule
    epoch_steps: int
    epochs: np.ndarray = field(init=False)
    _hits: np.ndarray = field(init=False)
    _seen: int = field(init=False, default=0)
    _steps: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        """No epoch run yet."""
        self.epochs = np.zeros(self.schedule.classes, dtype=np.int64)
        self._hits = np.zeros(self.schedule.classes)

    def active(self) -> np.ndarray:
        """The classes still searching."""
        return np.flatnonzero(~self.schedule.done)

    def cost(self, active: np.ndarray) -> np.ndarray:
        """The l1 weight of each active class."""
        return np.asarray(self.schedule.cost[active])

    def record(self, active: np.ndarray, hit: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """One step's hit rates and mask norms of the active classes; at an epoch's end the schedule
        moves, and the classes (indices into `active`) whose mask is a new smallest success are returned."""
        self._hits[active] += hit
        self._seen += 1
        self._steps += 1
        if self._steps % self.epoch_steps:
            return np.zeros(0, dtype=np.int64)
        n = self.schedule.classes
        is_active = np.zeros(n, dtype=bool)
        is_active[active] = True
        all_norms = np.zeros(n)
        all_norms[active] = norms
        improved = self.schedule.step(self._hits / self._seen, all_norms, is_active)
        self.epochs[active] += 1
        self._hits, self._seen = np.zeros(n), 0
        return np.flatnonzero(improved[active])

    def found(self) -> np.ndarray:
        """Which classes reached the success threshold at least once (their best mask is kept)."""
        return np.asarray(np.isfinite(self.schedule.best_norm))
