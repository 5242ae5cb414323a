"""Neural Cleanse's cost schedule, kept per class so that every class's search runs in one batch."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CostSchedule:
    """The per-class l1 weight of Wang et al. (S&P 2019, their released code), one entry per class.

    With `reset_cost_to_zero` (the released code's default) a class starts at cost 0, so the mask first
    grows until it sends the clean inputs to the class, and the cost is set to `init_cost` once the
    trigger reached `threshold` success for `patience` epochs in a row (the up/down record restarts
    then). After every schedule epoch (a few mini-batches) a class whose trigger reached `threshold`
    success for `patience` epochs in a row gets its cost multiplied by `multiplier`; one that missed it
    for `patience` epochs gets it divided by `multiplier ** 1.5`. The smallest mask that reached the
    threshold is kept. A class stops once its cost went both up and down and its best mask (once there is
    one) has not shrunk for `early_stop_patience` epochs.
    """

    classes: int
    init_cost: float = 1e-3
    threshold: float = 0.99
    patience: int = 5
    multiplier: float = 1.5
    early_stop_patience: int = 10
    reset_cost_to_zero: bool = False
    cost: np.ndarray = field(init=False)
    best_norm: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        """Every class starts at init_cost with no best mask."""
        n = self.classes
        self.cost = np.full(n, 0.0 if self.reset_cost_to_zero else float(self.init_cost))
        self._set = np.zeros(n, dtype=np.int64)
        self.best_norm = np.full(n, np.inf)
        self._up = np.zeros(n, dtype=np.int64)
        self._down = np.zeros(n, dtype=np.int64)
        self._went_up = np.zeros(n, dtype=bool)
        self._went_down = np.zeros(n, dtype=bool)
        self._stale = np.zeros(n, dtype=np.int64)
        self._stale_best = np.full(n, np.inf)
        self.done = np.zeros(n, dtype=bool)

    def step(self, success: np.ndarray, norms: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Record one epoch of the `active` classes; returns which of them found a new best mask."""
        improved = np.zeros(self.classes, dtype=bool)
        for k in np.flatnonzero(active):
            reached = success[k] >= self.threshold
            if reached and norms[k] < self.best_norm[k]:
                self.best_norm[k], improved[k] = norms[k], True
            if np.isfinite(self.best_norm[k]):
                self._stale[k] = self._stale[k] + 1 if self.best_norm[k] >= self._stale_best[k] else 0
            self._stale_best[k] = min(self._stale_best[k], self.best_norm[k])
            if self._went_up[k] and self._went_down[k] and self._stale[k] >= self.early_stop_patience:
                self.done[k] = True
                continue
            self._set[k] = self._set[k] + 1 if self.cost[k] == 0 and reached else 0
            if self._set[k] >= self.patience:
                self.cost[k], self._up[k], self._down[k] = float(self.init_cost), 0, 0
                self._went_up[k] = self._went_down[k] = False
            self._up[k], self._down[k] = (self._up[k] + 1, 0) if reached else (0, self._down[k] + 1)
            if self._up[k] >= self.patience:
                self._up[k], self._went_up[k] = 0, True
                self.cost[k] *= self.multiplier
            elif self._down[k] >= self.patience:
                self._down[k], self._went_down[k] = 0, True
                self.cost[k] /= self.multiplier**1.5
        return improved
