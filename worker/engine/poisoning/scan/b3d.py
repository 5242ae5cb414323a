"""B3D: Neural Cleanse's trigger search with gradients estimated from queries, for black-box models."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from worker.engine.poisoning.scan.base import (
    ANOMALY_THRESHOLD,
    Classify,
    ScanData,
    Scanner,
    ScanResult,
    findings,
    to_trigger,
    trigger_success,
)
from worker.engine.poisoning.scan.schedule import CostSchedule
from worker.engine.seeding import numpy_rng

_TANH_EDGE = 1 - 1e-6


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


@dataclass
class B3D(Scanner):
    """B3D, a black-box model scan for backdoors (queries only, no gradients, no training data).

    Paper: Dong, Yang, Deng, Pang, Xiao, Zhu and Zhu, "Black-box Detection of Backdoor Attacks with
    Limited Information and Data", ICCV 2021.

    Threat model: the defender can only query the model for its scores (an endpoint, a graph without
    a gradient path) and holds a small clean held-out set. As in B3D, Neural Cleanse's objective
    (cross-entropy to the class + cost * |m|_1 over a tanh-parametrised mask and pattern) is
    minimised with natural evolution strategies: the cross-entropy's gradient is estimated from
    `samples` antithetic Gaussian probes of scale `sigma` (the l1 term's gradient is exact), followed by
    Adam. The same cost schedule and the same MAD anomaly index (threshold 2) decide the flags. B3D
    searches a distribution over masks and patterns; this implementation searches the point estimate
    with the same gradient estimator, which needs fewer queries on small inputs.
    Cost: steps x classes x 2 x samples x batch_size queries.

    Parameters:
        steps: mini-batch steps per class, default 200.
        epoch_steps: steps per schedule epoch, default 5.
        batch_size: clean inputs per step, default 16.
        samples: antithetic probe pairs per step, default 20.
        sigma: probe scale in tanh space, default 0.1.
        learning_rate: Adam's step, default 0.1.
        init_cost, success_threshold, patience, cost_multiplier, early_stop_patience,
            anomaly_threshold: as Neural Cleanse (1e-3, 0.99, 5, 1.5, 10, 2).
    """

    name: ClassVar[str] = "b3d"
    paper: ClassVar[str] = "Dong et al., ICCV 2021 (B3D, black-box backdoor detection)"
    white_box: ClassVar[bool] = False

    steps: int = 200
    epoch_steps: int = 5
    batch_size: int = 16
    samples: int = 20
    sigma: float = 0.1
    learning_rate: float = 0.1
    init_cost: float = 1e-3
    success_threshold: float = 0.99
    patience: int = 5
    cost_multiplier: float = 1.5
    early_stop_patience: int = 10
    anomaly_threshold: float = ANOMALY_THRESHOLD

    def __post_init__(self) -> None:
        """Refuse budgets that cannot run."""
        if min(int(self.steps), int(self.epoch_steps), int(self.batch_size), int(self.samples)) < 1:
            raise ValueError("b3d: steps, epoch_steps, batch_size and samples must be at least 1")
        if not self.sigma > 0 or not self.learning_rate > 0 or not self.init_cost > 0:
            raise ValueError("b3d: sigma, learning_rate and init_cost must be > 0")
        if (
            not self.cost_multiplier > 1
            or not 0 < self.success_threshold <= 1
            or not self.anomaly_threshold > 0
        ):
            raise ValueError(
                "b3d: cost_multiplier must be > 1, success_threshold in (0, 1], anomaly_threshold > 0"
            )

    def scan(self, model: Classify, data: ScanData) -> ScanResult:
        """Reverse a trigger for every class from queries, flag the small ones, measure each."""
        k_all = data.num_classes
        low, high = data.input_range
        rng = numpy_rng(data.seed, 43)
        _, channels, height, width = data.x.shape
        area, volume = height * width, channels * height * width
        theta = np.arctanh((rng.random((k_all, area + volume)) - 0.5) * 2 * _TANH_EDGE)
        adam_m, adam_v = np.zeros_like(theta), np.zeros_like(theta)
        schedule = CostSchedule(
            k_all,
            self.init_cost,
            self.success_threshold,
            self.patience,
            self.cost_multiplier,
            self.early_stop_patience,
        )
        best = np.zeros_like(theta)
        hits, seen, epochs = np.zeros(k_all), 0, np.zeros(k_all, dtype=np.int64)
        batch, pairs, sigma = min(int(self.batch_size), len(data.x)), int(self.samples), float(self.sigma)

        def decode(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mask = (np.tanh(params[..., :area]) / 2 + 0.5).reshape(*params.shape[:-1], 1, height, width)
            pattern = low + (high - low) * (np.tanh(params[..., area:]) / 2 + 0.5)
            return mask, pattern.reshape(*params.shape[:-1], channels, height, width)

        def losses(params: np.ndarray, x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Cross-entropy to each row's class over the batch, and the hit rate: params [R, D]."""
            mask, pattern = decode(params)
            stamped = (1 - mask[:, None]) * x[None] + mask[:, None] * pattern[:, None]
            logits = model(stamped.reshape(-1, channels, height, width).astype(np.float32))
            logits = logits.reshape(len(params), len(x), -1)
            ce = -np.take_along_axis(_log_softmax(logits), targets[:, None, None], axis=2)[..., 0].mean(1)
            return ce, (logits.argmax(2) == targets[:, None]).mean(1)

        for step in range(int(self.steps)):
            active = np.flatnonzero(~schedule.done)
            if len(active) == 0:
                break
            x = data.x[rng.choice(len(data.x), batch, replace=False)]
            noise = rng.standard_normal((len(active), pairs, theta.shape[1]))
            probes = np.concatenate(
                [theta[active, None] + sigma * noise, theta[active, None] - sigma * noise], 1
            )
            targets = np.repeat(active, 2 * pairs)
            ce, _ = losses(probes.reshape(-1, theta.shape[1]), x, targets)
            ce = ce.reshape(len(active), 2, pairs)
            grad = ((ce[:, 0] - ce[:, 1])[..., None] * noise).mean(1) / (2 * sigma)
            mask_slope = (1 - np.tanh(theta[active, :area]) ** 2) / 2
            grad[:, :area] += schedule.cost[active, None] * mask_slope
            t = step + 1
            adam_m[active] = 0.5 * adam_m[active] + 0.5 * grad
            adam_v[active] = 0.9 * adam_v[active] + 0.1 * grad**2
            step_size = float(self.learning_rate) * np.sqrt(1 - 0.9**t) / (1 - 0.5**t)
            theta[active] -= step_size * adam_m[active] / (np.sqrt(adam_v[active]) + 1e-8)
            _, hit = losses(theta[active], x, active)
            hits[active] += hit
            seen += 1
            if t % int(self.epoch_steps) == 0:
                is_active = np.zeros(k_all, dtype=bool)
                is_active[active] = True
                norms = np.zeros(k_all)
                norms[active] = decode(theta[active])[0].reshape(len(active), -1).sum(1)
                improved = schedule.step(hits / seen, norms, is_active)
                best[improved] = theta[improved]
                epochs[active] += 1
                hits, seen = np.zeros(k_all), 0
            if data.progress is not None:
                data.progress.advance(1.0, f"{self.name} step {t}/{self.steps}")
        chosen = np.where(np.isfinite(schedule.best_norm)[:, None], best, theta)
        masks, patterns = decode(chosen)
        triggers = {
            k: to_trigger(masks[k, 0].astype(np.float32), patterns[k].astype(np.float32))
            for k in range(k_all)
        }
        norms = masks.reshape(k_all, -1).sum(1)
        success = np.array([trigger_success(model, triggers[k], data.x, data.y, k) for k in range(k_all)])
        threshold = float(self.anomaly_threshold)
        result = ScanResult(self.name, self.paper, threshold, findings(norms, success, threshold), {})
        result.triggers = {k: triggers[k] for k in result.shown()}
        queries = int(epochs.sum()) * int(self.epoch_steps) * (2 * pairs + 1) * batch
        result.details = {"epochs": {k: int(epochs[k]) for k in range(k_all)}, "queries": queries}
        return result
