"""Fine-pruning and ANP: repairs that cut the neurons a backdoor lives in."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

from worker.engine.defense.repair.base import Repair, RepairContext, RepairResult, recipe
from worker.engine.defense.repair.units import (
    channel_view,
    find_units,
    frozen_zeros,
    hooked,
    last_conv,
    prune,
)
from worker.engine.seeding import numpy_rng


@dataclass
class FinePruning(Repair):
    """Fine-pruning: prune the last convolutional layer's channels that stay dormant on clean data, then
    fine-tune (a backdoor hides in neurons clean inputs do not use).

    Paper: Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
    Neural Networks", RAID 2018.
    Threat model: the defender holds the model and a small clean labelled set, no poisoned data.

    Channels are pruned in increasing order of their mean (ReLU'd) activation on the clean set until
    clean accuracy falls more than `max_accuracy_drop` below the unpruned model's, or `max_ratio` of
    the layer is gone (the paper stops at a 4% drop on validation data); then the model is fine-tuned.

    Parameters: max_accuracy_drop (default 0.04), max_ratio (default 0.9), epochs (default 10),
    learning_rate (default 1e-3, Adam), batch_size (default 32).
    """

    name: ClassVar[str] = "fine_pruning"
    paper: ClassVar[str] = "Liu et al., RAID 2018 (Fine-Pruning)"

    max_accuracy_drop: float = 0.04
    max_ratio: float = 0.9
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32

    def repair(self, context: RepairContext) -> RepairResult:
        """Prune dormant channels of the last conv layer while clean accuracy holds, then fine-tune."""
        unit = last_conv(find_units(context.graph))
        model = context.model()
        totals: list[Tensor] = []

        def record(_: str, value: Tensor) -> Tensor:
            totals.append(value.detach().clamp(min=0).transpose(0, 1).reshape(value.shape[1], -1).mean(1))
            return value

        with hooked(context.graph, [unit.value], record):
            base = context.accuracy(model, context.x, context.y)
        order = torch.argsort(totals[0]).tolist()
        gate = torch.ones(unit.channels, device=context.device)
        pruned: list[int] = []
        with hooked(context.graph, [unit.value], lambda _, value: value * channel_view(gate, value)):
            for channel in order[: int(self.max_ratio * unit.channels)]:
                gate[channel] = 0.0
                if context.accuracy(model, context.x, context.y) < base - float(self.max_accuracy_drop):
                    gate[channel] = 1.0
                    break
                pruned.append(channel)
        prune(context.graph, unit, pruned)
        with frozen_zeros(context.graph, {unit: pruned}):
            history = context.train(
                recipe(self.epochs, self.learning_rate, self.batch_size), context.x, context.y, "fine-pruning"
            )
        return RepairResult(pruned={unit: pruned}, history=history, details={"layer": unit.value})


@dataclass
class ANP(Repair):
    """Adversarial neuron pruning: neurons a backdoor relies on are the ones whose small perturbation
    breaks the model; learn a mask that keeps clean accuracy under adversarial neuron perturbations and
    prune the neurons it drives down.

    Paper: Wu and Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models", NeurIPS 2021.
    Threat model: the defender holds the model and a small clean labelled set, no poisoned data and no
    knowledge of the trigger.

    Every neuron (a channel of each convolution, or of its batch norm, and each hidden linear unit) is
    multiplied by m + d, with a mask m in [0, 1] and a perturbation d in [-eps, eps]. Per iteration d
    takes one signed ascent step on the clean loss from a random start, then m descends
    alpha * loss(m) + (1 - alpha) * loss(m + d) (SGD, momentum 0.9) and is clipped to [0, 1]; neurons
    with m below `threshold` are pruned. The paper perturbs the weight and the bias of a neuron with
    separate noise; here one factor scales the neuron's output (weight and bias together).
    No fine-tuning afterwards (as the paper).

    Parameters: eps (default 0.4), alpha (default 0.2), mask_lr (default 0.2), iterations (default 300;
    the paper uses 2000 on CIFAR-10), batch_size (default 64), threshold (default 0.2).
    """

    name: ClassVar[str] = "anp"
    paper: ClassVar[str] = "Wu and Wang, NeurIPS 2021 (ANP)"

    eps: float = 0.4
    alpha: float = 0.2
    mask_lr: float = 0.2
    iterations: int = 300
    batch_size: int = 64
    threshold: float = 0.2

    def __post_init__(self) -> None:
        """Refuse parameters that cannot run."""
        if (
            not 0 <= float(self.eps) < 1
            or not 0 <= float(self.alpha) <= 1
            or not 0 < float(self.threshold) < 1
        ):
            raise ValueError("anp: eps must lie in [0, 1), alpha in [0, 1], threshold in (0, 1)")
        if int(self.iterations) < 1 or int(self.batch_size) < 1 or not float(self.mask_lr) > 0:
            raise ValueError("anp: iterations and batch_size must be at least 1, mask_lr > 0")

    def units_of_work(self, n: int) -> float:
        """One unit per iteration."""
        return float(self.iterations)

    def repair(self, context: RepairContext) -> RepairResult:
        """Learn the neuron mask under adversarial perturbations and prune below the threshold."""
        units = find_units(context.graph)
        if not units:
            raise ValueError("the model has no convolutional or hidden linear neurons to prune")
        device = context.device
        masks = {u.value: torch.ones(u.channels, device=device, requires_grad=True) for u in units}
        noise = {u.value: torch.zeros(u.channels, device=device, requires_grad=True) for u in units}
        perturb = [False]

        def gate(value_name: str, value: Tensor) -> Tensor:
            factor = masks[value_name] + (noise[value_name] if perturb[0] else 0.0)
            return value * channel_view(factor, value)

        model = context.model().eval()
        optimizer = torch.optim.SGD(list(masks.values()), lr=float(self.mask_lr), momentum=0.9)
        rng = numpy_rng(context.seed, 59)
        x_all = torch.as_tensor(context.x, device=device)
        y_all = torch.as_tensor(context.y, device=device, dtype=torch.long)
        batch, eps = min(int(self.batch_size), len(context.x)), float(self.eps)
        params = [p for p in model.parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            with hooked(context.graph, [u.value for u in units], gate):
                for iteration in range(int(self.iterations)):
                    pick = torch.as_tensor(rng.choice(len(context.x), batch, replace=False), device=device)
                    xb, yb = x_all[pick], y_all[pick]
                    if eps > 0:
                        self._perturb(model, noise, perturb, xb, yb, rng)
                    perturb[0] = False
                    natural = functional.cross_entropy(model(xb), yb)
                    loss = float(self.alpha) * natural
                    if eps > 0:
                        perturb[0] = True
                        loss = loss + (1 - float(self.alpha)) * functional.cross_entropy(model(xb), yb)
                        perturb[0] = False
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    with torch.no_grad():
                        for mask in masks.values():
                            mask.clamp_(0.0, 1.0)
                    if context.progress is not None:
                        context.progress.advance(1.0, f"anp iteration {iteration + 1}/{self.iterations}")
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)
        pruned = {
            u: torch.nonzero(masks[u.value].detach() < float(self.threshold)).flatten().tolist()
            for u in units
        }
        for unit, channels in pruned.items():
            prune(context.graph, unit, channels)
        return RepairResult(pruned=pruned, details={"iterations": int(self.iterations)})

    def _perturb(
        self,
        model: torch.nn.Module,
        noise: dict[str, Tensor],
        perturb: list[bool],
        xb: Tensor,
        yb: Tensor,
        rng: np.random.Generator,
    ) -> None:
        """One signed ascent step of the neuron perturbations from a uniform random start."""
        eps = float(self.eps)
        with torch.no_grad():
            for value in noise.values():
                value.copy_(torch.as_tensor(rng.uniform(-eps, eps, value.shape), dtype=value.dtype))
        perturb[0] = True
        loss = functional.cross_entropy(model(xb), yb)
        grads = torch.autograd.grad(loss, list(noise.values()))
        with torch.no_grad():
            for value, grad in zip(noise.values(), grads, strict=True):
                value.add_(eps * grad.sign()).clamp_(-eps, eps)
        perturb[0] = False
