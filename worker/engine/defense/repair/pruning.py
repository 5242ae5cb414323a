"""Fine-pruning: a repair that cuts the dormant neurons a backdoor lives in, then fine-tunes (ANP: anp.py)."""

from typing import ClassVar

import torch
from torch import Tensor

from app.schemas.repair_methods import FinePruningMethod
from worker.engine.defense.repair.base import Repair, RepairContext, RepairResult, recipe
from worker.engine.defense.repair.units import (
    channel_view,
    find_units,
    frozen_zeros,
    hooked,
    last_conv,
    prune,
)


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

    spec_type = FinePruningMethod
    spec: FinePruningMethod
    paper: ClassVar[str] = "Liu et al., RAID 2018 (Fine-Pruning)"

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
            for channel in order[: int(self.spec.max_ratio * unit.channels)]:
                gate[channel] = 0.0
                if context.accuracy(model, context.x, context.y) < base - float(self.spec.max_accuracy_drop):
                    gate[channel] = 1.0
                    break
                pruned.append(channel)
        prune(context.graph, unit, pruned)
        with frozen_zeros(context.graph, {unit: pruned}):
            history = context.train(
                recipe(self.spec),
                context.x,
                context.y,
                "fine-pruning",
            )
        return RepairResult(pruned={unit: pruned}, history=history, details={"layer": unit.value})
