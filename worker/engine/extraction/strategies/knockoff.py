"""Knockoff Nets: query a pool at random or with an adaptive bandit policy over pool clusters."""

from typing import Any

import numpy as np

from app.schemas.extraction import KnockoffParams
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies.bandit import GradientBandit
from worker.engine.extraction.strategies.base import Strategy, StrategyContext, query_in_batches
from worker.engine.extraction.surrogate import predict_probs


def cluster_pool(pool: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster index of every pool sample (the bandit's actions; the pool carries no labels)."""
    from sklearn.cluster import KMeans

    flat = pool.reshape(len(pool), -1).astype(np.float64)
    k = max(1, min(n_clusters, len(pool)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(flat).astype(np.int64)


class Knockoff(Strategy):
    """Knockoff Nets.

    Paper: Orekondy, Schiele and Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models",
    CVPR 2019. With a label-only interface the random strategy is CopycatCNN (Correia-Silva, Berriel,
    Badue, de Souza and Oliveira-Santos, "Copycat CNN", IJCNN 2018).

    Threat model: black-box queries of pool samples (no synthetic inputs), without replacement, so the
    budget is at most the pool size.

    Parameters:
        strategy: "random" (default; a seeded shuffle of the pool) or "adaptive" (a gradient bandit over
            `n_clusters` k-means clusters of the pool, rewarded by `reward`).
        reward: "cert", "div", "loss" or "all" (default), see GradientBandit.
        n_clusters: clusters (bandit actions), default 10.
        bandit_lr: the bandit's learning rate, default 0.1.
        batch_size: queries per bandit step, default 32 (the reference library asks one at a time).
        online_epochs: epochs the online surrogate of the `loss` reward trains on each new batch, default 1.
    """

    spec_type = KnockoffParams
    spec: KnockoffParams
    paper = "Orekondy, Schiele and Fritz, CVPR 2019"

    def __init__(self, spec: KnockoffParams) -> None:
        """Keep the spec; the adaptive policy's trace fills in as it runs."""
        super().__init__(spec)
        self.policy_trace: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        """Only what the strategy uses."""
        if self.spec.strategy == "random":
            return {"strategy": "random"}
        return super().params()

    @property
    def label(self) -> str:
        """knockoff (random) or knockoff (adaptive, reward)."""
        spec = self.spec
        return "knockoff (random)" if spec.strategy == "random" else f"knockoff (adaptive, {spec.reward})"

    def known_as(self, labels_only: bool) -> str | None:
        """With labels only, the random strategy is CopycatCNN."""
        random = self.spec.strategy == "random"
        return "CopycatCNN (Correia-Silva et al. 2018)" if random and labels_only else None

    def run(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """Spend the budget with the configured strategy."""
        runs = {"random": self._random, "adaptive": self._adaptive}
        runs[self.spec.strategy](interface, pool, ctx)

    def _random(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """A seeded shuffle of the pool, queried in order."""
        order = ctx.rng(1).permutation(len(pool))[: interface.remaining]
        query_in_batches(interface, pool[order], ctx, "knockoff random queries")

    def _adaptive(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """The gradient-bandit policy, one batch of actions per step."""
        rng = ctx.rng(2)
        clusters = cluster_pool(pool, self.spec.n_clusters, ctx.seed)
        n_actions = int(clusters.max()) + 1
        queues = [list(rng.permutation(np.flatnonzero(clusters == a))) for a in range(n_actions)]
        bandit = GradientBandit(n_actions, self.spec.reward, self.spec.bandit_lr)
        online = ctx.trainer.fresh(ctx.seed) if self.spec.reward in ("loss", "all") else None
        picks = np.zeros(n_actions, dtype=np.int64)
        step = 0
        while interface.remaining > 0:
            available = np.array([len(q) > 0 for q in queues])
            if not available.any():
                break
            pi = bandit.policy(available)
            actions, index = self._draw(rng, pi, queues, min(self.spec.batch_size, interface.remaining))
            x = pool[index]
            surrogate_probs = predict_probs(online, x) if online is not None else None
            answer = interface.query(x)
            outputs = answer.labels if answer.scores is None else answer.scores
            rewards = bandit.rewards(outputs, surrogate_probs, interface.num_classes)
            bandit.update(actions, rewards, pi)
            np.add.at(picks, actions, 1)
            if online is not None:
                ctx.trainer.update(
                    online,
                    x,
                    outputs,
                    seed=ctx.seed + step,
                    stage="knockoff online surrogate",
                    epochs=self.spec.online_epochs,
                )
            ctx.advance(len(x), "knockoff adaptive queries")
            step += 1
        final = bandit.policy(np.ones(n_actions, dtype=bool))
        self.policy_trace = {
            "cluster_sizes": np.bincount(clusters).tolist(),
            "queries_per_cluster": picks.tolist(),
            "final_policy": [float(p) for p in final],
        }

    @staticmethod
    def _draw(
        rng: np.random.Generator, pi: np.ndarray, queues: list[list[int]], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """n actions from pi, each with its cluster's next unqueried sample; exhausted ones are redrawn."""
        actions: list[int] = []
        index: list[int] = []
        policy = pi.copy()
        while len(actions) < n and policy.sum() > 0:
            for action in rng.choice(len(policy), size=n - len(actions), p=policy / policy.sum()):
                if queues[action]:
                    actions.append(int(action))
                    index.append(int(queues[action].pop()))
            policy = np.where([len(q) > 0 for q in queues], policy, 0.0)
        return np.asarray(actions, dtype=np.int64), np.asarray(index, dtype=np.int64)
