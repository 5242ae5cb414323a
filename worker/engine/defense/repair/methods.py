"""Fine-tuning and Neural Cleanse unlearning: repairs that only retrain, on clean and re-stamped samples."""

from typing import ClassVar

import numpy as np

from app.schemas.repair_methods import FineTuningMethod, NeuralCleanseMethod
from worker.engine.defense.repair.base import Repair, RepairContext, RepairResult, recipe
from worker.engine.seeding import numpy_rng


class FineTuning(Repair):
    """Fine-tuning on the clean set, the baseline every repair paper compares against.

    Paper: as evaluated by Liu, Dolan-Gavitt and Garg, "Fine-Pruning", RAID 2018 (and BackdoorBench).
    Threat model: the defender holds the model and a small clean labelled set, no poisoned data.

    Parameters: epochs (default 10), learning_rate (default 1e-3, Adam), batch_size (default 32).
    """

    spec_type = FineTuningMethod
    spec: FineTuningMethod
    paper: ClassVar[str] = "fine-tuning baseline (Liu et al., RAID 2018)"

    def repair(self, context: RepairContext) -> RepairResult:
        """Train the graph on the clean set."""
        history = context.train(
            recipe(self.spec),
            context.x,
            context.y,
            "fine-tuning",
        )
        return RepairResult(history=history)


class NeuralCleanseUnlearning(Repair):
    """Neural Cleanse unlearning: fine-tune with the reversed trigger stamped on clean samples that keep
    their labels, so the model unlearns the trigger-to-class shortcut.

    Paper: Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
    Networks", IEEE S&P 2019 (section VI.C, patching via unlearning).
    Threat model: the defender holds the model and a small clean labelled set, no poisoned data and no
    knowledge of the trigger; the triggers are reversed by Neural Cleanse (the flagged classes, or the
    most anomalous one when none is flagged).

    Parameters: stamp_share (share of the clean samples stamped each epoch, default 0.2 as the paper),
    epochs (default 10), learning_rate (default 1e-3, Adam), batch_size (default 32).
    """

    spec_type = NeuralCleanseMethod
    spec: NeuralCleanseMethod
    paper: ClassVar[str] = "Wang et al., IEEE S&P 2019 (Neural Cleanse unlearning)"

    def repair(self, context: RepairContext) -> RepairResult:
        """Reverse the triggers, stamp them on a share of the clean set (labels kept) and fine-tune."""
        if context.reverse is None:
            raise ValueError("neural_cleanse unlearning needs the reversed triggers")
        triggers = context.reverse(context.model())
        rng = numpy_rng(context.seed, 53)
        x, y = context.x.copy(), context.y.copy()
        picks = rng.choice(len(x), max(1, int(round(self.spec.stamp_share * len(x)))), replace=False)
        labels = sorted(triggers)
        which = rng.integers(0, len(labels), size=len(picks))
        for i, label in enumerate(labels):
            chosen = picks[which == i]
            x[chosen] = triggers[label].apply(x[chosen])
        # The stamped copies join the clean set, so every clean sample is also seen unstamped.
        history = context.train(
            recipe(self.spec),
            np.concatenate([context.x, x[picks]]),
            np.concatenate([context.y, y[picks]]),
            "unlearning",
        )
        return RepairResult(
            history=history, details={"unlearned_classes": labels, "stamped": int(len(picks))}
        )
