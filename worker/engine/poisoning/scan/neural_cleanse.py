"""Neural Cleanse: the smallest trigger sending clean inputs to each class; a backdoored class needs less."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from worker.engine.batching import batch_bounds
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


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """The model in eval mode with no parameter gradients; both restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def module_classify(model: nn.Module) -> Classify:
    """Logits of a torch module as a NumPy function (eval mode, no gradients)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    @torch.no_grad()
    def classify(x: np.ndarray) -> np.ndarray:
        model.eval()
        out = [
            model(torch.as_tensor(x[a:b], device=device)).float().cpu().numpy()
            for a, b in batch_bounds(len(x), 1024)
        ]
        return np.concatenate(out)

    return classify


@dataclass
class NeuralCleanse(Scanner):
    """Neural Cleanse, a white-box model scan for backdoors.

    Paper: Wang, Yao, Shan, Li, Viswanath, Zheng and Zhao, "Neural Cleanse: Identifying and Mitigating
    Backdoor Attacks in Neural Networks", IEEE S&P 2019.

    Threat model: the defender holds the trained model (gradients through it) and a small clean
    held-out set, never the training data. For every class it optimises a mask m (one value per pixel,
    shared by the channels) and a pattern p, both through tanh, so that (1 - m) x + m p sends the
    clean inputs to that class, minimising cross-entropy + cost * |m|_1 with Adam (lr 0.1, betas
    0.5/0.9 as the released code) and the paper's cost schedule (CostSchedule). A backdoored class
    needs a much smaller mask: the median-absolute-deviation anomaly index of the masks' l1 norms
    flags a class whose norm lies below the median by more than `anomaly_threshold` (2, the paper's).
    All classes are optimised together in one batch (each with its own cost), so a step costs one
    forward and backward pass over classes x batch_size stamped inputs.

    Parameters:
        steps: mini-batch steps per class, default 300 (the optimisation budget).
        epoch_steps: mini-batches per schedule epoch, default 5.
        batch_size: clean inputs per mini-batch, default 16 (the paper uses 32; 16 halves the cost
            with the same flags on the digits benchmark).
        learning_rate: Adam's step, default 0.1.
        init_cost: the first l1 weight, default 1e-3; success_threshold 0.99; patience 5;
            cost_multiplier 1.5; early_stop_patience 10 epochs (the paper's and ART's defaults).
        anomaly_threshold: default 2.
    """

    name: ClassVar[str] = "neural_cleanse"
    paper: ClassVar[str] = "Wang et al., IEEE S&P 2019 (Neural Cleanse)"
    white_box: ClassVar[bool] = True

    steps: int = 300
    epoch_steps: int = 5
    batch_size: int = 16
    learning_rate: float = 0.1
    init_cost: float = 1e-3
    success_threshold: float = 0.99
    patience: int = 5
    cost_multiplier: float = 1.5
    early_stop_patience: int = 10
    anomaly_threshold: float = ANOMALY_THRESHOLD

    def __post_init__(self) -> None:
        """Refuse budgets that cannot run."""
        if min(int(self.steps), int(self.epoch_steps), int(self.batch_size), int(self.patience)) < 1:
            raise ValueError("neural_cleanse: steps, epoch_steps, batch_size and patience must be at least 1")
        if not self.learning_rate > 0 or not self.init_cost > 0 or not self.cost_multiplier > 1:
            raise ValueError("neural_cleanse: learning_rate and init_cost must be > 0, cost_multiplier > 1")
        if not 0 < self.success_threshold <= 1 or not self.anomaly_threshold > 0:
            raise ValueError("neural_cleanse: success_threshold must lie in (0, 1], anomaly_threshold > 0")

    def scan(self, model: nn.Module, data: ScanData) -> ScanResult:
        """Reverse a trigger for every class, flag the small ones, measure each on the clean set."""
        classes = list(range(data.num_classes))
        masks, patterns, norms, epochs = self.reverse(model, data, classes)
        classify = module_classify(model)
        triggers = {k: to_trigger(masks[k], patterns[k]) for k in classes}
        success = np.array([trigger_success(classify, triggers[k], data.x, data.y, k) for k in classes])
        result = ScanResult(
            self.name,
            self.paper,
            float(self.anomaly_threshold),
            findings(norms, success, float(self.anomaly_threshold)),
            {},
        )
        result.triggers = {k: triggers[k] for k in result.shown()}
        result.details = {"epochs": epochs, "statistic": "mask l1 norm, MAD anomaly index"}
        return result

    def reverse(
        self, model: nn.Module, data: ScanData, targets: Sequence[int]
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray, dict[int, int]]:
        """Per target the smallest successful mask [H, W] and pattern [C, H, W], l1 norms, epochs run."""
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        low, high = data.input_range
        rng = numpy_rng(data.seed, 41)
        _, channels, height, width = data.x.shape
        n = len(targets)
        mask_raw = torch.tensor(_atanh(rng.random((n, 1, height, width))), device=device, requires_grad=True)
        pattern_raw = torch.tensor(
            _atanh(rng.random((n, channels, height, width))), device=device, requires_grad=True
        )
        optimizer = torch.optim.Adam([mask_raw, pattern_raw], lr=float(self.learning_rate), betas=(0.5, 0.9))
        schedule = CostSchedule(
            n,
            self.init_cost,
            self.success_threshold,
            self.patience,
            self.cost_multiplier,
            self.early_stop_patience,
        )
        best_mask = np.zeros((n, height, width), dtype=np.float32)
        best_pattern = np.zeros((n, channels, height, width), dtype=np.float32)
        x_all = torch.as_tensor(data.x, dtype=torch.float32, device=device)
        labels = torch.as_tensor(list(targets), device=device)
        epochs = np.zeros(n, dtype=np.int64)
        batch = min(int(self.batch_size), len(data.x))
        hits, seen = np.zeros(n), 0
        with _frozen(model):
            for step in range(int(self.steps)):
                active = np.flatnonzero(~schedule.done)
                if len(active) == 0:
                    break
                pick = torch.as_tensor(rng.choice(len(data.x), batch, replace=False), device=device)
                index = torch.as_tensor(active, device=device)
                mask = torch.tanh(mask_raw[index]) / 2 + 0.5
                pattern = low + (high - low) * (torch.tanh(pattern_raw[index]) / 2 + 0.5)
                stamped = _stamp(x_all[pick], mask, pattern)
                logits = model(stamped)
                target = labels[index].repeat_interleave(batch)
                ce = (
                    functional.cross_entropy(logits, target, reduction="none")
                    .view(len(active), batch)
                    .mean(1)
                )
                norm = mask.sum(dim=(1, 2, 3))
                cost = torch.as_tensor(schedule.cost[active], dtype=torch.float32, device=device)
                optimizer.zero_grad(set_to_none=True)
                (ce + cost * norm).sum().backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                hit = (
                    (logits.argmax(1) == target)
                    .view(len(active), batch)
                    .float()
                    .mean(1)
                    .detach()
                    .cpu()
                    .numpy()
                )
                hits[active] += hit
                seen += 1
                if (step + 1) % int(self.epoch_steps) == 0:
                    success = hits / seen
                    norms = np.zeros(n)
                    norms[active] = norm.detach().cpu().numpy()
                    is_active = np.zeros(n, dtype=bool)
                    is_active[active] = True
                    improved = schedule.step(success, norms, is_active)
                    epochs[active] += 1
                    for i in np.flatnonzero(improved):
                        row = int(np.flatnonzero(active == i)[0])
                        best_mask[i] = mask[row, 0].detach().cpu().numpy()
                        best_pattern[i] = pattern[row].detach().cpu().numpy()
                    hits, seen = np.zeros(n), 0
                if data.progress is not None:
                    data.progress.advance(1.0, f"{self.name} step {step + 1}/{self.steps}")
        final_mask = (torch.tanh(mask_raw) / 2 + 0.5).detach().cpu().numpy()[:, 0]
        final_pattern = (low + (high - low) * (torch.tanh(pattern_raw) / 2 + 0.5)).detach().cpu().numpy()
        masks, patterns = {}, {}
        for row, k in enumerate(targets):
            found = np.isfinite(schedule.best_norm[row])
            masks[k] = best_mask[row] if found else final_mask[row].astype(np.float32)
            patterns[k] = best_pattern[row] if found else final_pattern[row].astype(np.float32)
        norms_out = np.array([float(masks[k].sum()) for k in targets])
        return masks, patterns, norms_out, {int(k): int(epochs[i]) for i, k in enumerate(targets)}


def _atanh(values: np.ndarray) -> np.ndarray:
    """The tanh-space parameter of values in [0, 1] (float32)."""
    return np.arctanh((np.asarray(values) - 0.5) * 2 * _TANH_EDGE).astype(np.float32)


def _stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """Each of T masks and patterns stamped on every input: [T * B, C, H, W]."""
    stamped = (1 - mask[:, None]) * x[None] + mask[:, None] * pattern[:, None]
    return stamped.reshape(-1, *x.shape[1:])
