"""The trigger-search budget and per-class bookkeeping that Neural Cleanse and B3D share."""

from dataclasses import dataclass, field

import numpy as np

from worker.engine.poisoning.scan.base import ANOMALY_THRESHOLD
from worker.engine.poisoning.scan.schedule import CostSchedule


@dataclass
class TriggerSearchBudget:
    """Neural Cleanse's cost schedule and flag threshold (Wang et al., S&P 2019, their released code).

    Parameters:
        steps: mini-batch steps per class (the optimisation budget).
        epoch_steps: mini-batches per schedule epoch, default 5.
        batch_size: clean inputs per mini-batch, default 16.
        learning_rate: Adam's step, default 0.1.
        init_cost: the first l1 weight, default 1e-3.
        success_threshold: the share of stamped inputs a mask must send to its class, default 0.99.
        patience: schedule epochs before the cost moves, default 5.
        cost_multiplier: the cost's factor up (its 1.5th power down), default 1.5 (the released
            Visualizer's; its GTSRB example uses 2).
        early_stop_patience: epochs without a smaller mask before a class stops, default 10 (the
            released example uses 25).
        anomaly_threshold: the anomaly index above which a class is flagged, default 2.
        reset_cost_to_zero: start every class at cost 0 until its trigger succeeds (the released code's
            default), default False: with it, a multiplier of 2 and an early stop of 25 (the released
            example's settings, up to 1000 steps) the digits benchmark flagged blended 7 of 10 but BadNets
            8 of 10 (9 of 10 with these defaults), clean 9 of 10 either way (README).
    """

    steps: int = 600
    epoch_steps: int = 5
    batch_size: int = 16
    learning_rate: float = 0.1
    init_cost: float = 1e-3
    success_threshold: float = 0.99
    patience: int = 5
    cost_multiplier: float = 1.5
    early_stop_patience: int = 10
    anomaly_threshold: float = ANOMALY_THRESHOLD
    reset_cost_to_zero: bool = False

    def check_budget(self, label: str) -> None:
        """Refuse budgets that cannot run (ValueError naming the scanner)."""
        counts = (self.steps, self.epoch_steps, self.batch_size, self.patience, self.early_stop_patience)
        if min(int(value) for value in counts) < 1:
            raise ValueError(f"{label}: steps, epoch_steps, batch_size and the patiences must be at least 1")
        if not self.learning_rate > 0 or not self.init_cost > 0 or not self.cost_multiplier > 1:
            raise ValueError(f"{label}: learning_rate and init_cost must be > 0, cost_multiplier > 1")
        if not 0 < self.success_threshold <= 1 or not self.anomaly_threshold > 0:
            raise ValueError(f"{label}: success_threshold must lie in (0, 1], anomaly_threshold > 0")

    def search(self, classes: int) -> "TriggerSearch":
        """The per-class bookkeeping of one search over `classes` triggers."""
        schedule = CostSchedule(
            classes,
            self.init_cost,
            self.success_threshold,
            self.patience,
            self.cost_multiplier,
            self.early_stop_patience,
            bool(self.reset_cost_to_zero),
        )
        return TriggerSearch(schedule, int(self.epoch_steps))


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
