"""ActiveThief-style active learning: train, pick the most informative pool samples, query, retrain."""

import math

import numpy as np

from app.schemas.extraction import ActiveParams
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies.base import Strategy, StrategyContext, query_in_batches
from worker.engine.extraction.surrogate import predict_probs

_CHUNK = 2048


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row."""
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)


def _min_sq_distance(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance of each point to its nearest centre, in chunks."""
    best = np.full(len(points), np.inf)
    for start in range(0, len(centres), _CHUNK):
        c = centres[start : start + _CHUNK]
        d = (points**2).sum(1)[:, None] - 2 * points @ c.T + (c**2).sum(1)[None, :]
        best = np.minimum(best, d.min(axis=1))
    return np.clip(best, 0.0, None)


def k_center_greedy(candidates: np.ndarray, chosen: np.ndarray, k: int) -> np.ndarray:
    """Indices of k candidates picked greedily, each the farthest from everything chosen so far."""
    distance = _min_sq_distance(candidates, chosen) if len(chosen) else np.full(len(candidates), np.inf)
    picks = []
    for _ in range(min(k, len(candidates))):
        best = int(np.argmax(distance))
        picks.append(best)
        distance = np.minimum(distance, ((candidates - candidates[best]) ** 2).sum(axis=1))
        distance[best] = -1.0
    return np.asarray(picks, dtype=np.int64)


class Active(Strategy):
    """Active-learning extraction (ActiveThief).

    Paper: Pal, Gupta, Shukla, Kanade, Shevade and Ganapathy, "ActiveThief: Model Extraction Using
    Active Learning and Unannotated Public Data", AAAI 2020.

    Threat model: black-box queries of pool samples without replacement (budget <= pool size).

    A random seed set of `seed_fraction` of the budget is queried first; then each of `rounds` rounds
    trains a fresh surrogate on everything queried, scores the unqueried pool with it and queries the
    round's share of the budget: the highest-entropy samples ("uncertainty") or a greedy k-center
    cover of the surrogate's output space ("kcenter"), most informative first.

    Parameters:
        selection: "uncertainty" (default) or "kcenter".
        rounds: selection rounds, default 5.
        seed_fraction: share of the budget queried at random first, default 0.1.
    """

    spec_type = ActiveParams
    spec: ActiveParams
    paper = "Pal, Gupta, Shukla, Kanade, Shevade and Ganapathy, AAAI 2020"

    @property
    def label(self) -> str:
        """active (selection)."""
        return f"active ({self.spec.selection})"

    def run(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """Seed set, then rounds of selection."""
        budget = min(interface.remaining, len(pool))
        n_seed = max(1, min(budget, round(self.spec.seed_fraction * budget)))
        per_round = math.ceil((budget - n_seed) / self.spec.rounds) if budget > n_seed else 0
        order = ctx.rng(4).permutation(len(pool))
        queried = order[:n_seed]
        outputs = query_in_batches(interface, pool[queried], ctx, "active seed queries")
        for round_index in range(self.spec.rounds):
            k = min(per_round, interface.remaining, len(pool) - len(queried))
            if k <= 0:
                break
            stage = f"active round {round_index + 1}/{self.spec.rounds}"
            model = ctx.trainer.train(
                pool[queried], np.concatenate(outputs), seed=ctx.seed + round_index, stage=stage
            )
            mask = np.ones(len(pool), dtype=bool)
            mask[queried] = False
            candidates = np.flatnonzero(mask)
            probs = predict_probs(model, pool[candidates]).astype(np.float64)
            if self.spec.selection == "uncertainty":
                picks = np.argsort(-entropy(probs), kind="stable")[:k]
            else:
                chosen = predict_probs(model, pool[queried]).astype(np.float64)
                picks = k_center_greedy(probs, chosen, k)
            new = candidates[picks]
            outputs += query_in_batches(interface, pool[new], ctx, stage)
            queried = np.concatenate([queried, new])
