"""Neural Cleanse: the smallest trigger sending clean inputs to each class; a backdoored class needs less."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.poisoning_scan import NeuralCleanseScanParams
from worker.engine.batching import batch_bounds
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

    Parameters: the trigger search's (TriggerSearchParams). steps default 600: the schedule needs
    them to shrink the masks (300 missed 3 of 10 BadNets models on the digits benchmark, 600 one).
    batch_size 16, where the paper uses 32: 16 halves the cost with the same flags on that benchmark.
    The released code's cost schedule; its zero-cost start (reset_cost_to_zero) is available but off
    by default (see TriggerSearchParams).
    """

    spec_type = NeuralCleanseScanParams
    spec: NeuralCleanseScanParams
    paper: ClassVar[str] = "Wang et al., IEEE S&P 2019 (Neural Cleanse)"

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
            float(self.spec.anomaly_threshold),
            findings(norms, success, float(self.spec.anomaly_threshold)),
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
        optimizer = torch.optim.Adam(
            [mask_raw, pattern_raw], lr=float(self.spec.learning_rate), betas=(0.5, 0.9)
        )
        search = trigger_search(self.spec, n)
        best_mask = np.zeros((n, height, width), dtype=np.float32)
        best_pattern = np.zeros((n, channels, height, width), dtype=np.float32)
        x_all = torch.as_tensor(data.x, dtype=torch.float32, device=device)
        labels = torch.as_tensor(list(targets), device=device)
        batch = min(int(self.spec.batch_size), len(data.x))
        with _frozen(model):
            for step in range(int(self.spec.steps)):
                active = search.active()
                if len(active) == 0:
                    break
                pick = torch.as_tensor(rng.choice(len(data.x), batch, replace=False), device=device)
                index = torch.as_tensor(active, device=device)
                mask = torch.tanh(mask_raw[index]) / 2 + 0.5
                pattern = low + (high - low) * (torch.tanh(pattern_raw[index]) / 2 + 0.5)
                logits = model(_stamp(x_all[pick], mask, pattern))
                target = labels[index].repeat_interleave(batch)
                ce = functional.cross_entropy(logits, target, reduction="none").view(len(active), -1).mean(1)
                norm = mask.sum(dim=(1, 2, 3))
                cost = torch.as_tensor(search.cost(active), dtype=torch.float32, device=device)
                optimizer.zero_grad(set_to_none=True)
                (ce + cost * norm).sum().backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                hit = (logits.argmax(1) == target).view(len(active), batch).float().mean(1)
                for row in search.record(active, hit.cpu().numpy(), norm.detach().cpu().numpy()):
                    best_mask[active[row]] = mask[row, 0].detach().cpu().numpy()
                    best_pattern[active[row]] = pattern[row].detach().cpu().numpy()
                if data.progress is not None:
                    data.progress.advance(1.0, f"{self.name} step {step + 1}/{self.spec.steps}")
        final_mask = (torch.tanh(mask_raw) / 2 + 0.5).detach().cpu().numpy()[:, 0]
        final_pattern = (low + (high - low) * (torch.tanh(pattern_raw) / 2 + 0.5)).detach().cpu().numpy()
        found = search.found()
        masks, patterns = {}, {}
        for row, k in enumerate(targets):
            masks[k] = best_mask[row] if found[row] else final_mask[row].astype(np.float32)
            patterns[k] = best_pattern[row] if found[row] else final_pattern[row].astype(np.float32)
        norms_out = np.array([float(masks[k].sum()) for k in targets])
        return masks, patterns, norms_out, {int(k): int(search.epochs[i]) for i, k in enumerate(targets)}


def _atanh(values: np.ndarray) -> np.ndarray:
    """The tanh-space parameter of values in [0, 1] (float32)."""
    return np.arctanh((np.asarray(values) - 0.5) * 2 * _TANH_EDGE).astype(np.float32)


def _stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """Each of T masks and patterns stamped on every input: [T * B, C, H, W]."""
    stamped = (1 - mask[:, None]) * x[None] + mask[:, None] * pattern[:, None]
    return stamped.reshape(-1, *x.shape[1:])


def neural_cleanse(steps: int | None = None) -> NeuralCleanse:
    """Neural Cleanse at its spec's defaults, `steps` per class when given (repairs' reversed triggers)."""
    given = {} if steps is None else {"steps": steps}
    return NeuralCleanse(NeuralCleanseScanParams.model_validate({"name": "neural_cleanse", **given}))
