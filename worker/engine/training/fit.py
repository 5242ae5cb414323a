"""The one fit loop: seeded, batched, device-aware, with progress, cancellation and epoch hooks.

Every kind that trains a model (a surrogate, a poisoned victim, a hardened model, the demo's model)
trains it here. The per-batch loss is pluggable (adversarial training, distillation), the targets are
hard labels or soft label distributions, and an epoch callback evaluates the model, records curves,
stops training early or keeps the best epoch.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from worker.engine.progress import ProgressTracker
from worker.engine.seeding import seeded_generator
from worker.engine.training.recipe import TrainingRecipe

# A batch loss: (model in train mode, inputs, targets, generator) -> scalar loss to minimise.
BatchLoss = Callable[[nn.Module, Tensor, Tensor, torch.Generator], Tensor]
# Called after each epoch with (epoch index, model in eval mode); returns metrics to record.
EpochCallback = Callable[[int, nn.Module], dict[str, float]]


class StopTraining(Exception):  # noqa: N818 - a signal, not an error
    """Raised by an epoch callback to end training after the current epoch; the message says why.

    `metrics` are the epoch's metrics, recorded (and considered by keep_best) as if returned.
    """

    def __init__(self, reason: str = "", metrics: dict[str, float] | None = None) -> None:
        """Keep the reason and the epoch's metrics."""
        super().__init__(reason)
        self.metrics = dict(metrics or {})


@dataclass
class EpochRecord:
    """What one epoch did: its mean training loss and the callback's metrics."""

    epoch: int
    loss: float
    learning_rate: float
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Flat row for a report's training curve."""
        return {"epoch": self.epoch, "loss": self.loss, "learning_rate": self.learning_rate, **self.metrics}


@dataclass
class FitHistory:
    """The training curve, and whether training stopped early or went back to a better epoch."""

    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_early: str | None = None
    best_epoch: int | None = None

    def curve(self) -> list[dict[str, float]]:
        """The curve as report rows."""
        return [record.as_dict() for record in self.epochs]


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy to hard labels [B] or to label distributions [B, K]."""
    if targets.dim() == 1:
        return functional.cross_entropy(logits, targets)
    return -(targets * functional.log_softmax(logits, dim=1)).sum(dim=1).mean()


def cross_entropy_loss(model: nn.Module, x: Tensor, targets: Tensor, generator: torch.Generator) -> Tensor:
    """The default batch loss: cross-entropy of the model's logits to the targets."""
    return soft_cross_entropy(model(x), targets)


def _as_tensor(values: np.ndarray | Tensor, dtype: torch.dtype) -> Tensor:
    """A CPU tensor of the given dtype."""
    if isinstance(values, Tensor):
        return values.detach().to("cpu", dtype)
    return torch.as_tensor(np.ascontiguousarray(values), dtype=dtype)


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter; CPU for a model without parameters."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch; a last batch of one sample joins the one before (batch norm needs two)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(start, starts[i + 1] if i + 1 < len(starts) else n) for i, start in enumerate(starts)]


def fit(
    model: nn.Module,
    x: np.ndarray | Tensor,
    targets: np.ndarray | Tensor,
    *,
    recipe: TrainingRecipe,
    seed: int = 0,
    device: torch.device | None = None,
    loss: BatchLoss = cross_entropy_loss,
    on_epoch: EpochCallback | None = None,
    keep_best: str | None = None,
    progress: ProgressTracker | None = None,
    units_per_sample: float = 1.0,
    stage: str = "training",
) -> FitHistory:
    """Train `model` in place on (x, targets) and return its history; the model ends in eval mode.

    `targets` are integer labels [N] or label distributions [N, K] (float). Same model initialisation,
    data, recipe and seed give the same weights: the shuffle and every random draw of the loss (the
    generator it is passed) and of the model (dropout) come from `seed`. `progress` advances by
    `units_per_sample` per trained sample after every batch, so a cancellation raised by its callback
    stops training within one batch. With `keep_best`, the weights of the epoch whose callback metric
    of that name was highest are restored at the end.
    """
    device = device or _model_device(model)
    model.to(device)
    inputs = _as_tensor(x, torch.float32)
    labels = _as_tensor(targets, torch.float32 if np.ndim(targets) == 2 else torch.long)
    if len(inputs) != len(labels) or len(inputs) == 0:
        raise ValueError(f"need as many targets as inputs (> 0), got {len(inputs)} and {len(labels)}")
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters")
    optimizer = recipe.build_optimizer(parameters)
    shuffle = torch.Generator().manual_seed(seed)
    loss_generator = seeded_generator(device, seed, 1)
    history, best_state, best_value = FitHistory(), None, -float("inf")
    bounds = _batch_bounds(len(inputs), recipe.batch_size)
    n_batches = len(bounds)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(recipe.epochs):
            model.train()
            total, count = 0.0, 0
            order = torch.randperm(len(inputs), generator=shuffle)
            for number, (start, end) in enumerate(bounds):
                rate = recipe.learning_rate_at(epoch, number / n_batches)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                index = order[start:end]
                xb, tb = inputs[index].to(device), labels[index].to(device)
                optimizer.zero_grad(set_to_none=True)
                value = loss(model, xb, tb, loss_generator)
                value.backward()
                optimizer.step()
                total, count = total + float(value.detach()) * len(index), count + len(index)
                if progress is not None:
                    label = f"{stage} epoch {epoch + 1}/{recipe.epochs} batch {number + 1}/{n_batches}"
                    progress.advance(units_per_sample * len(index), label)
            model.eval()
            record = EpochRecord(epoch + 1, total / count, recipe.learning_rate_at(epoch))
            history.epochs.append(record)
            try:
                if on_epoch is not None:
                    record.metrics = dict(on_epoch(epoch + 1, model))
            except StopTraining as stop:
                record.metrics = stop.metrics
                history.stopped_early = str(stop) or "stopped by the epoch callback"
            if keep_best is not None and record.metrics.get(keep_best, -float("inf")) > best_value:
                best_value, history.best_epoch = record.metrics[keep_best], epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            if history.stopped_early:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
