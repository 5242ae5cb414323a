"""Per-eps metrics and the per-sample worst case of an evasion evaluation (NumPy only)."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _share(mask: np.ndarray) -> float:
    """Share of True values; 0.0 for an empty mask."""
    return float(mask.mean()) if mask.size else 0.0


def eps_result(
    eps: float,
    *,
    robust: np.ndarray,
    success: np.ndarray,
    perturbation: np.ndarray,
    attacked: np.ndarray,
    seconds: float,
    measured: np.ndarray | None = None,
) -> dict[str, Any]:
    """One results row of an attack.

    robust: per sample, classified correctly after the attack (all evaluated samples).
    success: per sample, the attack succeeded (False where not attacked).
    perturbation: per sample, size of x_adv - x in the attack's norm.
    attacked: per sample, the attack ran (clean-correct, and for fixed targets not already the target).
    measured: per sample, whose perturbation the statistics describe (default: attacked; minimum-norm
    attacks pass their successes, since a failed search leaves x unchanged).
    Success rate and perturbation statistics are over those samples; None when there are none.
    """
    n_attacked = int(attacked.sum())
    sizes = perturbation[attacked if measured is None else measured]
    return {
        "eps": float(eps),
        "robust_accuracy": _share(robust),
        "attack_success_rate": float(success[attacked].mean()) if n_attacked else None,
        "mean_perturbation": float(sizes.mean()) if sizes.size else None,
        "median_perturbation": float(np.median(sizes)) if sizes.size else None,
        "max_perturbation": float(sizes.max()) if sizes.size else None,
        "n_attacked": n_attacked,
        "n_succeeded": int(success[attacked].sum()),
        "seconds": float(seconds),
    }


def query_stats(queries: np.ndarray, attacked: np.ndarray) -> dict[str, Any]:
    """Model queries per attacked sample (mean, median, max) and in total, for black-box attacks."""
    spent = queries[attacked]
    if not spent.size:
        return {"mean_queries": None, "median_queries": None, "max_queries": None, "total_queries": 0}
    return {
        "mean_queries": float(spent.mean()),
        "median_queries": float(np.median(spent)),
        "max_queries": int(spent.max()),
        "total_queries": int(spent.sum()),
    }


@dataclass
class WorstCase:
    """Per-sample worst case across attacks, grouped by (norm, eps).

    A sample is robust at (norm, eps) only if it is classified correctly after every attack of
    that norm that evaluated that eps. For a targeted attack this means correctness, not merely a
    missed target: a sample pushed to a wrong non-target class is not robust.
    """

    n_samples: int
    _robust: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    _attacks: dict[tuple[str, float], int] = field(default_factory=dict)

    def add(self, norm: str, eps: float, robust: np.ndarray) -> None:
        """Fold one attack's per-sample robustness at (norm, eps) into the worst case."""
        if robust.shape != (self.n_samples,):
            raise ValueError(f"robust must have shape ({self.n_samples},), got {robust.shape}")
        key = (norm, float(eps))
        previous = self._robust.get(key)
        self._robust[key] = robust.copy() if previous is None else previous & robust
        self._attacks[key] = self._attacks.get(key, 0) + 1

    def rows(self) -> list[dict[str, Any]]:
        """Report rows sorted by norm then eps."""
        return [
            {
                "norm": norm,
                "eps": eps,
                "robust_accuracy": _share(self._robust[(norm, eps)]),
                "n_attacks": self._attacks[(norm, eps)],
            }
            for norm, eps in sorted(self._robust)
        ]
