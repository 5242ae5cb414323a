"""B3D: Neural Cleanse's trigger search with gradients estimated from queries, for black-box models."""

from typing import ClassVar

import numpy as np

from app.schemas.poisoning_scan import B3DScanParams
from worker.engine.poisoning.scan.base import (
    Classify,
    ScanData,
    Scanner,
    ScanResult,
    findings,
    to_trigger,
    trigger_success,
)
from worker.engine.poisoning.scan.budget import trigger_search
from worker.engine.seeding import numpy_rng

_TANH_EDGE = 1 - 1e-6


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


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
            anomaly_threshold: the trigger search's (TriggerSearchParams), as Neural Cleanse (1e-3,
            0.99, 5, 1.5, 10, 2).
    """

    spec_type = B3DScanParams
    spec: B3DScanParams
    paper: ClassVar[str] = "Dong et al., ICCV 2021 (B3D, black-box backdoor detection)"

    def scan(self, model: Classify, data: ScanData) -> ScanResult:
        """Reverse a trigger for every class from queries, flag the small ones, measure each."""
        k_all = data.num_classes
        low, high = data.input_range
        rng = numpy_rng(data.seed, 43)
        _, channels, height, width = data.x.shape
        area, volume = height * width, channels * height * width
        theta = np.arctanh((rng.random((k_all, area + volume)) - 0.5) * 2 * _TANH_EDGE)
        adam_m, adam_v = np.zeros_like(theta), np.zeros_like(theta)
        search = trigger_search(self.spec, k_all)
        best = np.zeros_like(theta)
        batch, pairs, sigma = (
            min(int(self.spec.batch_size), len(data.x)),
            int(self.spec.samples),
            float(self.spec.sigma),
        )

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

        for step in range(int(self.spec.steps)):
            active = search.active()
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
            grad[:, :area] += search.cost(active)[:, None] * mask_slope
            t = step + 1
            adam_m[active] = 0.5 * adam_m[active] + 0.5 * grad
            adam_v[active] = 0.9 * adam_v[active] + 0.1 * grad**2
            step_size = float(self.spec.learning_rate) * np.sqrt(1 - 0.9**t) / (1 - 0.5**t)
            theta[active] -= step_size * adam_m[active] / (np.sqrt(adam_v[active]) + 1e-8)
            _, hit = losses(theta[active], x, active)
            norms = decode(theta[active])[0].reshape(len(active), -1).sum(1)
            improved = active[search.record(active, hit, norms)]
            best[improved] = theta[improved]
            if data.progress is not None:
                data.progress.advance(1.0, f"{self.name} step {t}/{self.spec.steps}")
        chosen = np.where(search.found()[:, None], best, theta)
        masks, patterns = decode(chosen)
        triggers = {
            k: to_trigger(masks[k, 0].astype(np.float32), patterns[k].astype(np.float32))
            for k in range(k_all)
        }
        norms = masks.reshape(k_all, -1).sum(1)
        success = np.array([trigger_success(model, triggers[k], data.x, data.y, k) for k in range(k_all)])
        threshold = float(self.spec.anomaly_threshold)
        result = ScanResult(self.name, self.paper, threshold, findings(norms, success, threshold), {})
        result.triggers = {k: triggers[k] for k in result.shown()}
        queries = int(search.epochs.sum()) * int(self.spec.epoch_steps) * (2 * pairs + 1) * batch
        result.details = {"epochs": {k: int(search.epochs[k]) for k in range(k_all)}, "queries": queries}
        return result
