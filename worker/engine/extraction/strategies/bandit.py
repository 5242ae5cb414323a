"""Knockoff Nets' adaptive policy: a gradient bandit over pool clusters, batched and numerically stable."""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from worker.engine.extraction.outputs import distributions

Reward = Literal["cert", "div", "loss", "all"]
REWARDS: tuple[Reward, ...] = ("cert", "div", "loss", "all")
_TINY = 1e-12


def stable_softmax(preferences: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Softmax of the preferences over available actions (others get probability 0), without overflow."""
    masked = np.where(available, preferences, -np.inf)
    shifted = masked - masked[available].max()
    weights = np.where(available, np.exp(shifted), 0.0)
    return weights / weights.sum()


def certainty(y: np.ndarray) -> np.ndarray:
    """Margin between the two largest victim scores, per sample (Orekondy et al.'s `cert`)."""
    top = np.sort(y, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def cross_entropy(y: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Cross-entropy of the surrogate's prediction to the victim's answer, per sample (`loss`)."""
    return -(y * np.log(np.clip(y_hat, _TINY, 1.0))).sum(axis=1)


@dataclass
class RunningStats:
    """Running mean and variance of vectors (Welford), over every sample seen."""

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, values: np.ndarray) -> None:
        """Add a batch of rows."""
        for row in values:
            self.count += 1
            if self.mean is None or self.m2 is None:
                self.mean, self.m2 = row.astype(np.float64).copy(), np.zeros_like(row, dtype=np.float64)
                continue
            delta = row - self.mean
            self.mean = self.mean + delta / self.count
            self.m2 = self.m2 + delta * (row - self.mean)

    def std(self) -> np.ndarray:
        """Standard deviation (1 where nothing varies yet)."""
        if self.m2 is None or self.count < 2:
            return np.ones(1)
        std = np.sqrt(self.m2 / self.count)
        return np.where(std > _TINY, std, 1.0)


@dataclass
class GradientBandit:
    """Gradient bandit (Sutton and Barto, section 2.8) with batched updates.

    Each step draws a batch of actions from pi = softmax(H), gets one reward per sample and moves
    H_a by learning_rate * mean_i (r_i - baseline) * (1[a_i = a] - pi_a); the baseline is the mean of
    all earlier rewards. Rewards (Orekondy et al.): `cert` the victim's top-2 margin, `div` how much the
    answer exceeds the running mean answer, `loss` the surrogate's cross-entropy to the answer, `all`
    the sum of the three, each standardised by its running mean and deviation.
    """

    n_actions: int
    reward: Reward
    learning_rate: float
    preferences: np.ndarray = field(init=False)
    _baseline: float = field(init=False, default=0.0)
    _seen: int = field(init=False, default=0)
    _answers: RunningStats = field(init=False, default_factory=RunningStats)
    _components: RunningStats = field(init=False, default_factory=RunningStats)

    def __post_init__(self) -> None:
        """Start indifferent."""
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, not {self.reward!r}")
        self.preferences = np.zeros(self.n_actions)

    def policy(self, available: np.ndarray) -> np.ndarray:
        """Action probabilities over the available actions."""
        return stable_softmax(self.preferences, available)

    def rewards(
        self, answers: np.ndarray, surrogate_probs: np.ndarray | None, num_classes: int
    ) -> np.ndarray:
        """Per-sample rewards for a batch of answers (labels [B] or scores [B, K])."""
        y = distributions(answers, num_classes).astype(np.float64)
        mean = self._answers.mean if self._answers.mean is not None else y.mean(axis=0)
        div = np.clip(y - mean, 0.0, None).sum(axis=1)
        self._answers.update(y)
        parts = {"cert": certainty(y), "div": div}
        if surrogate_probs is not None:
            parts["loss"] = cross_entropy(y, surrogate_probs)
        if self.reward != "all":
            return parts[self.reward]
        stacked = np.stack([parts["cert"], parts["div"], parts["loss"]], axis=1)
        self._components.update(stacked)
        assert self._components.mean is not None
        return ((stacked - self._components.mean) / self._components.std()).sum(axis=1)

    def update(self, actions: np.ndarray, rewards: np.ndarray, pi: np.ndarray) -> None:
        """One batched preference update; the baseline then absorbs the batch's rewards."""
        baseline = self._baseline if self._seen else float(rewards.mean())
        centred = rewards - baseline
        onehot = np.eye(self.n_actions)[actions]
        self.preferences = self.preferences + self.learning_rate * (centred[:, None] * (onehot - pi)).mean(0)
        self._seen += len(rewards)
        self._baseline += (float(rewards.sum()) - len(rewards) * self._baseline) / self._seen
